//! The ClinicDesk UI: Leptos, client-side rendered, talking only to the app's Tauri
//! commands. PHI lives in this page only inside the workspaces of an unlocked session; when
//! the core locks, those views are unmounted and their signals cleared.
//!
//! Layers, each importing only those below it: `shell` picks by the core's phase between
//! `screens` (no session yet, or around one) and `workspace` (an unlocked session); both use
//! `state`, `widgets`, `time` and `bridge`, the only module that talks to Tauri.

mod bridge;
mod error_text;
mod screens;
mod shell;
mod state;
mod time;
mod widgets;
mod workspace;

fn main() {
    leptos::mount::mount_to_body(shell::App);
}
