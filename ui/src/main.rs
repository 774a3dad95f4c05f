//! The ClinicDesk UI: Leptos, client-side rendered, talking only to the app's Tauri
//! commands. PHI lives in this page only inside the views of an unlocked session; when
//! the core locks, those views are unmounted and their signals cleared.

mod admin;
mod admin_break_glass;
mod admin_users;
mod bridge;
mod care_team;
mod error_text;
mod screens;
mod state;
mod time;
mod views;
mod widgets;

fn main() {
    leptos::mount::mount_to_body(views::App);
}
