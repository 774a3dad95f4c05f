//! Small pieces that screens and workspaces both use; none holds state of its own.

use leptos::prelude::*;

use crate::state::Ui;

/// The page's one error line, under the form that caused it.
#[component]
pub(crate) fn ErrorLine() -> impl IntoView {
    let ui = expect_context::<Ui>();
    view! {
        <Show when=move || ui.error.get().is_some()>
            <div class="error" id="error" role="alert">{move || ui.error.get().unwrap_or_default()}</div>
        </Show>
    }
}

/// Puts the cursor in a screen's first field when it appears (keyboard-first desks).
pub(crate) fn focus_on_mount(input: NodeRef<leptos::html::Input>) {
    Effect::new(move |_| {
        if let Some(el) = input.get() {
            let _ = el.focus();
        }
    });
}
