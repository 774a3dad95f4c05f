//! The admin's workspace, shown instead of the schedule to admins (who read no schedule):
//! the clinic's workstations, its users, the break-glass review queue, and the import of
//! the clinic's records from its old system (which names source ids, never values) with the
//! directory of its practitioners. Admins see no
//! patient content, so nothing here holds PHI: a break-glass grant names its patient by id.
//!
//! It imports nothing from the clinical side of `workspace` (schedule, chart, care team),
//! which holds PHI, nor from `screens`; like them it reaches the core only through `bridge`.

mod break_glass;
mod directory;
mod import;
mod users;
mod workstations;

use leptos::prelude::*;

use crate::state::Ui;
use break_glass::BreakGlassView;
use import::ImportView;
use users::UsersView;
use workstations::WorkstationsView;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tab {
    Workstations,
    Users,
    BreakGlass,
    Import,
}

/// The admin's tabs; each tab loads its list when it opens.
#[component]
pub(crate) fn AdminWorkspace() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let tab = RwSignal::new(Tab::Workstations);
    let pick = move |t: Tab| {
        ui.error.set(None);
        tab.set(t);
    };
    view! {
        <div class="admin">
            <nav class="tabs">
                <button id="tab-workstations" class:active=move || tab.get() == Tab::Workstations
                    on:click=move |_| pick(Tab::Workstations)>"Workstations"</button>
                <button id="tab-users" class:active=move || tab.get() == Tab::Users
                    on:click=move |_| pick(Tab::Users)>"Users"</button>
                <button id="tab-break-glass" class:active=move || tab.get() == Tab::BreakGlass
                    on:click=move |_| pick(Tab::BreakGlass)>"Break-glass reviews"</button>
                <button id="tab-import" class:active=move || tab.get() == Tab::Import
                    on:click=move |_| pick(Tab::Import)>"Import records"</button>
            </nav>
            {move || match tab.get() {
                Tab::Workstations => view! { <WorkstationsView/> }.into_any(),
                Tab::Users => view! { <UsersView/> }.into_any(),
                Tab::BreakGlass => {
                    view! { <BreakGlassView/> }.into_any()
                }
                Tab::Import => view! { <ImportView/> }.into_any(),
            }}
        </div>
    }
}
