//! The admin's workstations tab: every enrolled workstation with its audit trail's standing,
//! a new enrollment code, revocation (which makes the workstation wipe itself), and the
//! tamper alerts of the clinic's audit chains; and what the users' offline copies on each
//! workstation hold (counts of patients and users, never who).

use clinicdesk_protocol::wire::{AuditAlerts, DeviceList, DeviceSummary, EnrollmentCodeIssued};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::Serialize;

use crate::bridge::{NoArgs, call};
use crate::state::Ui;
use crate::time::{local_date_time, local_date_time_ms};
use crate::widgets::ErrorLine;

#[derive(Serialize)]
struct RevokeArgs {
    device_id: String,
}

fn load_devices(ui: Ui, devices: RwSignal<Option<DeviceList>>) {
    spawn_local(async move {
        match call::<_, DeviceList>("devices", &NoArgs {}).await {
            Ok(list) => devices.set(Some(list)),
            Err(e) => ui.fail(&e),
        }
    });
}

fn load_alerts(ui: Ui, alerts: RwSignal<Option<AuditAlerts>>) {
    spawn_local(async move {
        match call::<_, AuditAlerts>("audit_alerts", &NoArgs {}).await {
            Ok(found) => alerts.set(Some(found)),
            Err(e) => ui.fail(&e),
        }
    });
}

#[component]
pub(super) fn WorkstationsView() -> impl IntoView {
    let ui = expect_context::<Ui>();
    ui.error.set(None);
    let devices = RwSignal::new(None::<DeviceList>);
    let issued = RwSignal::new(None::<EnrollmentCodeIssued>);
    let alerts = RwSignal::new(None::<AuditAlerts>);
    load_devices(ui, devices);
    load_alerts(ui, alerts);
    let issue = move |_| {
        ui.error.set(None);
        spawn_local(async move {
            match call::<_, EnrollmentCodeIssued>("issue_enrollment_code", &NoArgs {}).await {
                Ok(code) => issued.set(Some(code)),
                Err(e) => ui.fail(&e),
            }
        });
    };
    view! {
        <div class="card wide" id="admin-devices">
            <div class="title-row">
                <h1>"Workstations"</h1>
                <button id="issue-code" on:click=issue>"New enrollment code"</button>
            </div>
            {move || issued.get().map(|c| view! {
                <div class="notice" id="enrollment-code-issued">
                    "Enrollment code "<code class="secret" id="enrollment-code">{c.enrollment_code.expose().to_owned()}</code>
                    " works once, until "{local_date_time(&c.expires_at)}". Enter it on the new workstation."
                </div>
            })}
            {move || match devices.get() {
                None => view! { <p class="muted">"Loading the workstations…"</p> }.into_any(),
                Some(list) if list.devices.is_empty() => {
                    view! { <p class="muted">"No workstations enrolled yet."</p> }.into_any()
                }
                Some(list) => view! {
                    <table class="devices" id="device-list">
                        <thead><tr>
                            <th>"Workstation"</th><th>"Enrolled"</th><th>"Last seen"</th>
                            <th>"App"</th><th>"Audit trail"</th><th>"Offline copies"</th><th></th>
                        </tr></thead>
                        <tbody>
                            {list.devices.into_iter().map(|d| view! { <DeviceRow d devices/> }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            }}
            {move || alerts.get().map(|a| view! { <IntegrityView alerts=a devices/> })}
            <ErrorLine/>
        </div>
    }
}

/// The audit chains' standing: tamper alerts (never dropped by the server), sequences
/// still missing, and records revoked workstations handed in late, by workstation name.
#[component]
fn IntegrityView(alerts: AuditAlerts, devices: RwSignal<Option<DeviceList>>) -> impl IntoView {
    let name = move |id: uuid::Uuid| {
        devices
            .get()
            .and_then(|l| l.devices.into_iter().find(|d| d.id == id).map(|d| d.name))
            .unwrap_or_else(|| "A workstation no longer listed".to_owned())
    };
    if alerts.tamper.is_empty()
        && alerts.outstanding.is_empty()
        && alerts.received_after_revocation.is_empty()
        && alerts.flagged_claims.is_empty()
    {
        return view! {
            <p class="ok" id="audit-integrity">
                "Audit trail intact: no tamper alerts, nothing missing from any workstation."
            </p>
        }
        .into_any();
    }
    view! {
        <div class="alerts" id="audit-integrity">
            <h2>"Audit trail alerts"</h2>
            <ul>
                {alerts.tamper.into_iter().map(|t| {
                    if t.kind == "rollback" {
                        return view! {
                            <li class="tamper rollback">
                                <strong>{move || name(t.device_id)}</strong>
                                {format!(" holds the server's signed receipt for its records up to #{}, and the server no longer holds them all: the server's audit store was rolled back (restored from an older backup?) before {}. What this workstation still had is stored again; what the server lost is not. Treat it as a security incident until the restore is accounted for.",
                                    t.device_seq, local_date_time_ms(t.received_at_ms))}
                            </li>
                        }
                        .into_any();
                    }
                    let what = match t.kind.as_str() {
                        "fork" => "sent a different record for a position it had already sent",
                        "chain_break" => "sent a record that does not link to the one before it",
                        "unknown_actor" => "sent a record naming a user who never signed in on it",
                        _ => "sent a record the server kept aside",
                    };
                    view! {
                        <li class="tamper">
                            <strong>{move || name(t.device_id)}</strong>
                            {format!(" {what} (#{}), received {}. The stored trail is unchanged; find out how this workstation's data was altered or restored.",
                                t.device_seq, local_date_time_ms(t.received_at_ms))}
                        </li>
                    }
                    .into_any()
                }).collect_view()}
                {alerts.outstanding.into_iter().map(|o| view! {
                    <li class="missing">
                        <strong>{move || name(o.device_id)}</strong>
                        {format!(" has not sent records #{} to #{} yet (later ones arrived).", o.from_seq, o.to_seq)}
                    </li>
                }).collect_view()}
                {alerts.received_after_revocation.into_iter().map(|r| view! {
                    <li class="late">
                        <strong>{move || name(r.device_id)}</strong>
                        {format!(" handed in {} record{} (#{} to #{}) after it was revoked on {}, signed before that. They are in the trail; if the workstation was lost or taken, check who was signed in.",
                            r.events, if r.events == 1 { "" } else { "s" }, r.from_seq, r.to_seq, local_date_time_ms(r.revoked_at_ms))}
                    </li>
                }).collect_view()}
                {alerts.flagged_claims.into_iter().map(|c| {
                    let role = c.doubted.iter().any(|d| d == "actor_role");
                    let time = c.doubted.iter().any(|d| d == "occurred_at_ms");
                    let what = match (role, time) {
                        (true, true) => "a role its user did not sign in with there, and a time it could not have signed",
                        (true, false) => "a role its user did not sign in with there",
                        _ => "a time it could not have signed (before it was enrolled or its user signed in there, or ahead of the server's clock)",
                    };
                    view! {
                        <li class="flagged">
                            <strong>{move || name(c.device_id)}</strong>
                            {format!(" sent record #{} with {what}. Dated {} by the workstation, received {}. It is in the trail, flagged; check the workstation's clock and who holds its key.",
                                c.device_seq, local_date_time_ms(c.occurred_at_ms), local_date_time_ms(c.received_at_ms))}
                        </li>
                    }
                }).collect_view()}
            </ul>
        </div>
    }
    .into_any()
}

#[component]
fn DeviceRow(d: DeviceSummary, devices: RwSignal<Option<DeviceList>>) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let confirming = RwSignal::new(false);
    let id = d.id;
    let revoke = move |_| {
        if !confirming.get_untracked() {
            confirming.set(true);
            return;
        }
        ui.error.set(None);
        spawn_local(async move {
            let args = RevokeArgs {
                device_id: id.to_string(),
            };
            match call::<_, ()>("revoke_device", &args).await {
                Ok(()) => load_devices(ui, devices),
                Err(e) => ui.fail(&e),
            }
        });
    };
    let enrolled = format!(
        "{}{}",
        local_date_time(&d.enrolled_at),
        d.enrolled_by
            .map(|by| format!(" by {by}"))
            .unwrap_or_default()
    );
    let audit = if d.audit_outstanding > 0 {
        view! {
            <span class="warn">{format!("#{} received, {} missing", d.audit_contiguous_seq, d.audit_outstanding)}</span>
        }
        .into_any()
    } else {
        view! { <span>{format!("#{} received", d.audit_contiguous_seq)}</span> }.into_any()
    };
    // Counts only: how many users keep a copy here and how many patients those hold.
    let copies = match &d.offline_copy {
        None => "None".to_owned(),
        Some(c) => format!(
            "{} patient{} · {} user{} · as of {}",
            c.patients,
            if c.patients == 1 { "" } else { "s" },
            c.users,
            if c.users == 1 { "" } else { "s" },
            local_date_time(&c.reported_at)
        ),
    };
    let revoked = d.revoked_at.is_some();
    let action = match d.revoked_at {
        Some(at) => {
            view! { <span class="muted">{format!("Revoked {}", local_date_time(&at))}</span> }
                .into_any()
        }
        None => view! {
            <button class="danger revoke-device" data-device-id=id.to_string() on:click=revoke>
                {move || if confirming.get() { "Confirm: revoke and wipe" } else { "Revoke" }}
            </button>
        }
        .into_any(),
    };
    view! {
        <tr class="device-row" class:revoked=revoked>
            <td class="device-name">{d.name}</td>
            <td>{enrolled}</td>
            <td>{d.last_seen_at.as_deref().map(local_date_time).unwrap_or_else(|| "Never".to_owned())}</td>
            <td>{d.app_version.unwrap_or_else(|| "–".to_owned())}</td>
            <td>{audit}</td>
            <td class="offline-copies">{copies}</td>
            <td>{action}</td>
        </tr>
    }
}
