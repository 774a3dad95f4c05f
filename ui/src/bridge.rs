//! The only way into the app's Rust core: Tauri's global `invoke` and `listen`, and the
//! command runners the screens share. Nothing else in the UI names a Tauri API, so this file
//! is the whole surface the core exposes to the page.

use clinicdesk_protocol::app::AppStatus;
use clinicdesk_protocol::{ApiError, ErrorCode};
use leptos::prelude::{RwSignal, Set};
use leptos::task::spawn_local;
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasm_bindgen::prelude::*;

use crate::state::Ui;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = ["window", "__TAURI__", "core"], catch)]
    async fn invoke(cmd: &str, args: JsValue) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(js_namespace = ["window", "__TAURI__", "event"], catch)]
    async fn listen(event: &str, handler: &Closure<dyn FnMut(JsValue)>)
    -> Result<JsValue, JsValue>;
}

/// No arguments: an empty object.
#[derive(Serialize)]
pub struct NoArgs {}

/// Invokes a command; errors come back as the core's `ApiError`.
pub async fn call<A: Serialize, R: DeserializeOwned>(cmd: &str, args: &A) -> Result<R, ApiError> {
    let args = serde_wasm_bindgen::to_value(args)
        .map_err(|_| ApiError::with_field(ErrorCode::BadRequest, "arguments"))?;
    match invoke(cmd, args).await {
        Ok(value) => {
            serde_wasm_bindgen::from_value(value).map_err(|_| ApiError::new(ErrorCode::Internal))
        }
        Err(error) => Err(serde_wasm_bindgen::from_value(error)
            .unwrap_or_else(|_| ApiError::new(ErrorCode::Internal))),
    }
}

/// Runs `handler` whenever the core emits `event`, for the page's lifetime.
pub fn on_event(event: &'static str, handler: impl FnMut(JsValue) + 'static) {
    let closure = Closure::new(handler);
    wasm_bindgen_futures::spawn_local(async move {
        let _ = listen(event, &closure).await;
        // The page lives as long as the app; keep the callback alive with it.
        closure.forget();
    });
}

/// Runs a command that changes the phase (lock, switch user, sign out, retry): PHI is
/// dropped from the page first, then the screen follows the core's answer.
pub(crate) fn change_phase(ui: Ui, command: &'static str) {
    ui.begin_change();
    ui.forget_phi();
    ui.error.set(None);
    spawn_local(async move {
        match call::<_, AppStatus>(command, &NoArgs {}).await {
            Ok(status) => {
                ui.begin_change();
                ui.apply_status(status);
            }
            Err(e) => ui.fail(&e),
        }
    });
}

/// Runs a phase-changing command a form submitted: `busy` while it runs, then the screen
/// follows the core's answer, or the error line explains the refusal.
pub(crate) fn submit_command<A: Serialize + 'static>(
    ui: Ui,
    busy: RwSignal<bool>,
    command: &'static str,
    args: A,
) {
    run_command(ui, busy, command, args, move |status: AppStatus| {
        ui.apply_status(status)
    });
}

/// Runs a phase-changing command: `busy` while it runs, then `done` with the core's answer
/// (after which the screen follows the new phase), or the error line explains the refusal.
pub(crate) fn run_command<A, T>(
    ui: Ui,
    busy: RwSignal<bool>,
    command: &'static str,
    args: A,
    done: impl FnOnce(T) + 'static,
) where
    A: Serialize + 'static,
    T: DeserializeOwned + 'static,
{
    busy.set(true);
    ui.error.set(None);
    ui.begin_change();
    spawn_local(async move {
        match call::<_, T>(command, &args).await {
            Ok(answer) => {
                ui.begin_change();
                done(answer);
            }
            Err(e) => ui.fail(&e),
        }
        busy.set(false);
    });
}
