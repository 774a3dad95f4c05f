//! The admin's users tab: who may sign in, with which role and second factor; add a user,
//! change a role, reset a second factor, deactivate. Each action asks once more before it
//! acts; the server ends the user's sessions and records the change.

use clinicdesk_protocol::mfa::MfaMethod;
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::{NewUser, UserList, UserSummary};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::Serialize;

use crate::bridge::{NoArgs, call};
use crate::state::Ui;
use crate::widgets::ErrorLine;

#[derive(Serialize)]
struct UserArgs {
    user_id: String,
}

#[derive(Serialize)]
struct RoleArgs {
    user_id: String,
    role: Role,
}

#[derive(Serialize)]
struct CreateArgs {
    user: NewUser,
}

fn role_label(role: Role) -> &'static str {
    match role {
        Role::FrontDesk => "Front desk",
        Role::Clinician => "Clinician",
        Role::Billing => "Billing",
        Role::Admin => "Admin",
    }
}

fn load(ui: Ui, users: RwSignal<Option<UserList>>) {
    spawn_local(async move {
        match call::<_, UserList>("users", &NoArgs {}).await {
            Ok(list) => users.set(Some(list)),
            Err(e) => ui.fail(&e),
        }
    });
}

/// Runs an admin command, then reloads the list.
fn act<A: Serialize + 'static>(
    ui: Ui,
    users: RwSignal<Option<UserList>>,
    command: &'static str,
    args: A,
) {
    ui.error.set(None);
    spawn_local(async move {
        match call::<_, ()>(command, &args).await {
            Ok(()) => load(ui, users),
            Err(e) => ui.fail(&e),
        }
    });
}

#[component]
pub(super) fn UsersView() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let users = RwSignal::new(None::<UserList>);
    load(ui, users);
    let me = ui
        .status
        .get_untracked()
        .and_then(|s| s.user)
        .map(|u| u.user_id);
    let saved = RwSignal::new(None::<String>);
    let export = move |_| {
        ui.error.set(None);
        spawn_local(async move {
            match call::<_, String>("export_access_review", &NoArgs {}).await {
                Ok(path) => saved.set(Some(path)),
                Err(e) => ui.fail(&e),
            }
        });
    };
    view! {
        <div class="card wide" id="admin-users">
            <div class="title-row">
                <h1>"Users"</h1>
                <button id="export-access-review" title="Every user who can reach patient data, with role, status, second factors, workstations and last sign-in"
                    on:click=export>"Export access review (CSV)"</button>
            </div>
            {move || saved.get().map(|path| view! {
                <div class="notice" id="access-review-saved">"Access review saved to "<code>{path}</code></div>
            })}
            {move || match users.get() {
                None => view! { <p class="muted">"Loading the users…"</p> }.into_any(),
                Some(list) => view! {
                    <table class="devices" id="user-list">
                        <thead><tr>
                            <th>"User"</th><th>"Role"</th><th>"Second factor"</th><th></th>
                        </tr></thead>
                        <tbody>
                            {list.users.into_iter().map(|u| {
                                let is_me = Some(u.user_id) == me;
                                view! { <UserRow u is_me users/> }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            }}
            <NewUserForm users/>
            <ErrorLine/>
        </div>
    }
}

#[component]
fn UserRow(u: UserSummary, is_me: bool, users: RwSignal<Option<UserList>>) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let id = u.user_id.to_string();
    // Which action waits for its confirming second click.
    let confirming = RwSignal::new(None::<&'static str>);
    let ask = move |action: &'static str, run: Box<dyn FnOnce()>| {
        if confirming.get_untracked() == Some(action) {
            confirming.set(None);
            run();
        } else {
            confirming.set(Some(action));
        }
    };
    let label = move |action: &'static str, text: &'static str, confirm: &'static str| {
        move || {
            if confirming.get() == Some(action) {
                confirm
            } else {
                text
            }
        }
    };
    let factor = if u.mfa.contains(&MfaMethod::Webauthn) {
        "Security key"
    } else if u.mfa.contains(&MfaMethod::Totp) {
        "Authenticator app"
    } else if u.first_password_pending {
        "Not signed in yet (chooses a password, then a second factor)"
    } else {
        "Not set up (asked at next sign-in)"
    };
    let role = u.role;
    let (reset_id, deactivate_id, role_id) = (id.clone(), id.clone(), id.clone());
    let actions = if is_me {
        view! { <span class="muted">"You"</span> }.into_any()
    } else if !u.active {
        view! { <span class="muted">"Deactivated"</span> }.into_any()
    } else {
        view! {
            <button class="danger reset-mfa" on:click=move |_| {
                let user_id = reset_id.clone();
                ask("reset", Box::new(move || act(ui, users, "reset_second_factor", UserArgs { user_id })));
            }>{label("reset", "Reset second factor", "Confirm reset")}</button>
            " "
            <button class="danger deactivate-user" on:click=move |_| {
                let user_id = deactivate_id.clone();
                ask("deactivate", Box::new(move || act(ui, users, "deactivate_user", UserArgs { user_id })));
            }>{label("deactivate", "Deactivate", "Confirm deactivate")}</button>
        }
        .into_any()
    };
    let role_cell = if is_me || !u.active {
        view! { <span>{role_label(role)}</span> }.into_any()
    } else {
        view! {
            <select class="role-select" on:change=move |ev| {
                let picked = Role::parse(&event_target_value(&ev)).unwrap_or(role);
                if picked != role {
                    act(ui, users, "change_role", RoleArgs { user_id: role_id.clone(), role: picked });
                }
            }>
                {Role::ALL.into_iter().map(|r| view! {
                    <option value=r.as_str() selected=r == role>{role_label(r)}</option>
                }).collect_view()}
            </select>
        }
        .into_any()
    };
    let (active, username) = (u.active, u.username);
    let shown = username.clone();
    view! {
        <tr class="user-row" class:revoked=!active data-username=username>
            <td><b>{u.display_name}</b><br/><span class="muted">{shown}</span></td>
            <td>{role_cell}</td>
            <td>{factor}</td>
            <td>{actions}</td>
        </tr>
    }
}

#[component]
fn NewUserForm(users: RwSignal<Option<UserList>>) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let username = RwSignal::new(String::new());
    let display_name = RwSignal::new(String::new());
    let role = RwSignal::new(Role::FrontDesk);
    let password = RwSignal::new(String::new());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        ui.error.set(None);
        let args = CreateArgs {
            user: NewUser {
                username: username.get_untracked().trim().to_owned(),
                display_name: display_name.get_untracked(),
                role: role.get_untracked(),
                password: password.get_untracked().into(),
            },
        };
        spawn_local(async move {
            match call::<_, UserSummary>("create_user", &args).await {
                Ok(_) => {
                    username.set(String::new());
                    display_name.set(String::new());
                    password.set(String::new());
                    load(ui, users);
                }
                Err(e) => ui.fail(&e),
            }
        });
    };
    view! {
        <h2>"Add a user"</h2>
        <form class="grid-form" on:submit=submit>
            <label for="new-username">"Username"</label>
            <input id="new-username" autocomplete="off" placeholder="jo.billing"
                prop:value=move || username.get() on:input=move |ev| username.set(event_target_value(&ev))/>
            <label for="new-display-name">"Full name"</label>
            <input id="new-display-name" autocomplete="off"
                prop:value=move || display_name.get() on:input=move |ev| display_name.set(event_target_value(&ev))/>
            <label for="new-role">"Role"</label>
            <select id="new-role" on:change=move |ev| {
                if let Some(r) = Role::parse(&event_target_value(&ev)) { role.set(r) }
            }>
                {Role::ALL.into_iter().map(|r| view! {
                    <option value=r.as_str() selected=r == Role::FrontDesk>{role_label(r)}</option>
                }).collect_view()}
            </select>
            <label for="new-password">"First password"</label>
            <input id="new-password" type="password" autocomplete="new-password"
                prop:value=move || password.get() on:input=move |ev| password.set(event_target_value(&ev))/>
            <p class="muted hint">"At least 12 characters and hard to guess; give it to the person in private. It works once, within 72 hours: at their first sign-in they choose their own password, then set up their second factor."</p>
            <button id="new-user-submit" type="submit">"Add user"</button>
        </form>
    }
}
