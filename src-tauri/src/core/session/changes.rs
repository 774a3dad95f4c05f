//! Changes made in the app, online or off: each goes to the user's queue
//! ([`crate::local::changes`]) after its signed audit event is committed to the outbox
//! (no event, no change: BRIEF 2), together with its effect on the cached copy, in one
//! transaction of the cache (fail closed: if it fails, nothing changed on screen). The
//! sender replays the queue in order with the session's token, each change named by its
//! id so that one sent again after a lost answer is stored once.
//!
//! A change the server cannot take as it is stays in the queue with the reason, never
//! dropped without a word: refused (the role may not write the field, the slot is taken),
//! in conflict with a newer version (the user picks, field by field), or a possible
//! duplicate (the user says whether it is a new person). Later changes of the same patient
//! wait behind it, so the queue's order holds for each patient.

use std::collections::HashSet;

use clinicdesk_protocol::ErrorCode;
use clinicdesk_protocol::app::{ChangeState, ChangeSummary, FieldConflict, UnsentChanges};
use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_protocol::wire::RecordWritten;
use rusqlite::Transaction;
use secrecy::SecretString;
use uuid::Uuid;

use crate::core::Core;
use crate::error::AppError;
use crate::local::cache;
use crate::local::changes::{self, Change, Queued};
use crate::local::db::DbError;
use crate::local::outbox::Draft;
use crate::net::client::ServerClient;
use crate::os::clock::rfc3339;

/// How many recently sent changes the core remembers the answer of (for the command that
/// made one to tell the UI, when the background sender got there first).
const REMEMBER_SENT: usize = 64;

impl Change {
    /// The resource its audit event names.
    fn resource_type(&self) -> &'static str {
        match self {
            Change::RegisterPatient { .. } | Change::UpdatePatient { .. } => "Patient",
            Change::Book { .. } | Change::ChangeAppointment { .. } => "Appointment",
            Change::AddCoverage { .. } | Change::UpdateCoverage { .. } => "Coverage",
        }
    }

    fn action(&self) -> AuditAction {
        match self {
            Change::RegisterPatient { .. } | Change::Book { .. } | Change::AddCoverage { .. } => {
                AuditAction::Create
            }
            Change::UpdatePatient { .. }
            | Change::ChangeAppointment { .. }
            | Change::UpdateCoverage { .. } => AuditAction::Update,
        }
    }

    fn route(&self) -> &'static str {
        match self {
            Change::RegisterPatient { .. } => "register_patient",
            Change::UpdatePatient { .. } => "update_patient",
            Change::Book { .. } => "book",
            Change::ChangeAppointment { .. } => "change_appointment",
            Change::AddCoverage { .. } => "add_coverage",
            Change::UpdateCoverage { .. } => "update_coverage",
        }
    }

    /// Sends it: a create as `POST`, a change as `PATCH` based on its version.
    async fn send(
        &self,
        client: &ServerClient,
        token: &SecretString,
        change_id: Uuid,
    ) -> Result<RecordWritten, AppError> {
        match self {
            Change::RegisterPatient { registration, .. } => {
                client
                    .write_record(token, "/v1/patients", change_id, None, registration)
                    .await
            }
            Change::UpdatePatient {
                id,
                based_on,
                update,
            } => {
                let path = format!("/v1/patients/{id}");
                client
                    .write_record(token, &path, change_id, Some(*based_on), update)
                    .await
            }
            Change::Book { booking, .. } => {
                client
                    .write_record(token, "/v1/appointments", change_id, None, booking)
                    .await
            }
            Change::ChangeAppointment {
                id,
                based_on,
                update,
                ..
            } => {
                let path = format!("/v1/appointments/{id}");
                client
                    .write_record(token, &path, change_id, Some(*based_on), update)
                    .await
            }
            Change::AddCoverage {
                patient_id,
                coverage,
                ..
            } => {
                let path = format!("/v1/patients/{patient_id}/coverages");
                client
                    .write_record(token, &path, change_id, None, coverage)
                    .await
            }
            Change::UpdateCoverage {
                id,
                based_on,
                coverage,
                ..
            } => {
                let path = format!("/v1/coverages/{id}");
                client
                    .write_record(token, &path, change_id, Some(*based_on), coverage)
                    .await
            }
        }
    }
}

fn summary(q: &Queued) -> ChangeSummary {
    ChangeSummary {
        change_id: q.change_id,
        kind: q.change.kind(),
        record_id: q.change.record_id(),
        patient_id: q.change.patient_id(),
        fields: q.change.fields(),
        made_at: rfc3339(q.made_at_ms),
        state: q.state.clone(),
    }
}

/// What the server's refusal of a change means for it: a state the user must see, or
/// `None` when it is worth trying again later (the server failing, the session ending).
fn settled_by(error: &AppError) -> Option<ChangeState> {
    let AppError::Server(api) = error else {
        return None;
    };
    match api.code {
        ErrorCode::Conflict if api.current_version.is_some() => Some(ChangeState::Conflict {
            current_version: api.current_version.unwrap_or_default(),
            fields: api.fields.clone(),
        }),
        ErrorCode::PossibleDuplicate => Some(ChangeState::PossibleDuplicate {
            candidates: api.candidates.clone(),
        }),
        ErrorCode::Internal
        | ErrorCode::TooManyAttempts
        | ErrorCode::SessionExpired
        | ErrorCode::Unauthenticated
        | ErrorCode::DeviceRevoked => None,
        code => Some(ChangeState::Refused {
            code,
            field: api.field.clone(),
        }),
    }
}

/// A field's value as the conflict screen shows it: text as it is, a name, an address and an
/// emergency contact as a person writes them, anything else as JSON.
fn shown(value: Option<serde_json::Value>) -> String {
    use serde_json::Value;
    let text = |map: &serde_json::Map<String, Value>, k: &str| {
        map.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    // Parts joined by `sep`, the empty ones left out.
    let joined = |parts: Vec<String>, sep: &str| {
        parts
            .into_iter()
            .filter(|p| !p.trim().is_empty())
            .collect::<Vec<_>>()
            .join(sep)
    };
    match value {
        Some(Value::String(s)) => s,
        Some(Value::Object(map)) if map.contains_key("family") => {
            joined(vec![text(&map, "given"), text(&map, "family")], " ")
        }
        // An address as a letter has it: its lines, then town, state and code, then country.
        Some(Value::Object(map)) if map.contains_key("city") => {
            let mut parts: Vec<String> = map
                .get("line")
                .and_then(Value::as_array)
                .map(|l| {
                    l.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            parts.push(joined(
                vec![
                    text(&map, "city"),
                    text(&map, "state"),
                    text(&map, "postal_code"),
                ],
                " ",
            ));
            parts.push(text(&map, "country"));
            joined(parts, ", ")
        }
        // An emergency contact: who, how related, their phone.
        Some(Value::Object(map)) if map.contains_key("relationship") => {
            let who = match text(&map, "relationship") {
                r if r.is_empty() => text(&map, "name"),
                r => format!("{} ({r})", text(&map, "name")),
            };
            joined(vec![who, text(&map, "phone")], ", ")
        }
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

impl Core {
    /// Queues `change` (its event first, then the queue and `effect` on the cached copy in
    /// one transaction), then sends the queue if the session is online. Answers where the
    /// change stands.
    pub(super) async fn make_change(
        &self,
        change: Change,
        effect: impl FnOnce(&Transaction<'_>, i64) -> Result<(), DbError>,
    ) -> Result<ChangeSummary, AppError> {
        let (_, generation) = self.session_snapshot()?;
        let change_id = Uuid::new_v4();
        let now = self.clock.now_ms();
        self.with_unlocked(generation, |u, proof| {
            let draft = Draft {
                action: change.action(),
                resource_type: change.resource_type(),
                resource_id: change.record_id().to_string(),
                patient_id: Some(change.patient_id()),
                fields: change.fields(),
                offline: u.token.is_none(),
                route: change.route(),
                break_glass: None,
            };
            proof.device().record(&u.key, &u.user, draft, now)?;
            u.cache.transaction(|tx| {
                changes::enqueue(tx, change_id, &change, now)?;
                effect(tx, now)
            })?;
            Ok(())
        })?;
        self.device.want_upload();
        self.send_and_tell(change_id).await
    }

    /// Sends the queue (when online), then answers where `change_id` stands.
    async fn send_and_tell(&self, change_id: Uuid) -> Result<ChangeSummary, AppError> {
        match self.send_changes().await {
            Ok(_) | Err(AppError::Unreachable | AppError::NotTrusted) => {}
            Err(e @ (AppError::Locked | AppError::SignedOut | AppError::DeviceRevoked)) => {
                return Err(e);
            }
            Err(e) => tracing::debug!(code = %e.to_api().code, "changes not sent yet"),
        }
        let (_, generation) = self.session_snapshot()?;
        let queued = self.with_unlocked(generation, |u, _| {
            Ok(changes::get(u.cache.connection(), change_id)?)
        })?;
        if let Some(q) = queued {
            return Ok(summary(&q));
        }
        self.sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|s| s.change_id == change_id)
            .cloned()
            .ok_or(AppError::Internal("change lost"))
    }

    /// Sends waiting changes in order until the queue is empty of what can be sent, or the
    /// server cannot be reached (`Unreachable`). One sender at a time. Answers how many the
    /// server stored.
    pub async fn send_changes(&self) -> Result<usize, AppError> {
        let _one_sender = self.sending.lock().await;
        let mut sent = 0;
        loop {
            let (token, generation) = self.session_snapshot()?;
            if token.is_none() {
                return Err(AppError::Unreachable);
            }
            let next = self.with_unlocked(generation, |u, _| {
                let all = changes::all(u.cache.connection())?;
                // A patient with a change the user must look at holds their later ones.
                let mut held: HashSet<Uuid> = HashSet::new();
                for q in all {
                    if q.state != ChangeState::Waiting {
                        held.insert(q.change.patient_id());
                    } else if !held.contains(&q.change.patient_id()) {
                        return Ok(Some(q));
                    }
                }
                Ok(None)
            })?;
            let Some(q) = next else {
                return Ok(sent);
            };
            let change = q.change.clone();
            let answer = self
                .fetch(token, |client, token| async move {
                    change.send(&client, &token, q.change_id).await
                })
                .await;
            match answer {
                Ok(written) => {
                    self.with_unlocked(generation, |u, _| {
                        let now = self.clock.now_ms();
                        u.cache.transaction(|tx| {
                            changes::remove(tx, q.change_id)?;
                            if matches!(
                                q.change,
                                Change::Book { .. } | Change::ChangeAppointment { .. }
                            ) {
                                cache::change_appointment(tx, written.id, now, |a| {
                                    a.version = Some(written.version);
                                })?;
                            }
                            cache::touch_online(tx, now)
                        })?;
                        Ok(())
                    })?;
                    self.remember_sent(&q, written);
                    sent += 1;
                }
                Err(e) => match settled_by(&e) {
                    Some(state) => {
                        self.with_unlocked(generation, |u, _| {
                            Ok(changes::set_state(
                                u.cache.connection(),
                                q.change_id,
                                &state,
                            )?)
                        })?;
                    }
                    None => return Err(self.refused_in(generation, e).await),
                },
            }
        }
    }

    /// Keeps what the server stored for `q`, for the command that made it.
    fn remember_sent(&self, q: &Queued, written: RecordWritten) {
        let mut kept = summary(q);
        kept.record_id = written.id;
        kept.state = ChangeState::Sent {
            version: written.version,
        };
        let mut sent = self
            .sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if sent.len() >= REMEMBER_SENT {
            sent.pop_front();
        }
        sent.push_back(kept);
    }

    /// The user's changes not yet on the server, oldest first.
    pub fn unsent_changes(&self) -> Result<UnsentChanges, AppError> {
        let (_, generation) = self.session_snapshot()?;
        let changes =
            self.with_unlocked(generation, |u, _| Ok(changes::all(u.cache.connection())?))?;
        Ok(UnsentChanges {
            changes: changes.iter().map(summary).collect(),
        })
    }

    /// The queued change `change_id`, if it is in the state `wanted` accepts.
    fn queued_change(
        &self,
        change_id: Uuid,
        wanted: impl FnOnce(&ChangeState) -> bool,
    ) -> Result<(Queued, u64), AppError> {
        let (_, generation) = self.session_snapshot()?;
        let q = self
            .with_unlocked(generation, |u, _| {
                Ok(changes::get(u.cache.connection(), change_id)?)
            })?
            .ok_or(AppError::BadInput("change_id"))?;
        if !wanted(&q.state) {
            return Err(AppError::BadInput("change_id"));
        }
        Ok((q, generation))
    }

    /// After a `possible_duplicate`: the user checked the candidates and this is a new
    /// person. The registration is sent again, confirmed.
    pub async fn confirm_new_person(&self, change_id: Uuid) -> Result<ChangeSummary, AppError> {
        let (q, generation) = self.queued_change(change_id, |s| {
            matches!(s, ChangeState::PossibleDuplicate { .. })
        })?;
        let Change::RegisterPatient {
            id,
            mut registration,
        } = q.change
        else {
            return Err(AppError::BadInput("change_id"));
        };
        registration.confirm_new_person = true;
        let change = Change::RegisterPatient { id, registration };
        self.with_unlocked(generation, |u, _| {
            Ok(changes::replace(u.cache.connection(), change_id, &change)?)
        })?;
        self.send_and_tell(change_id).await
    }

    /// Takes out a change the server did not take (refused, in conflict, or a duplicate the
    /// user recognised), with its effect on the cached copy of a new record. Recorded as the
    /// deletion of the queued change, so the trail says the change was never made.
    pub fn discard_change(&self, change_id: Uuid) -> Result<UnsentChanges, AppError> {
        let (q, generation) = self.queued_change(change_id, |s| *s != ChangeState::Waiting)?;
        let now = self.clock.now_ms();
        self.with_unlocked(generation, |u, proof| {
            let draft = Draft {
                action: AuditAction::Delete,
                resource_type: "QueuedChange",
                resource_id: change_id.to_string(),
                patient_id: Some(q.change.patient_id()),
                fields: q.change.fields(),
                offline: u.token.is_none(),
                route: "discard_change",
                break_glass: None,
            };
            proof.device().record(&u.key, &u.user, draft, now)?;
            u.cache.transaction(|tx| {
                changes::remove(tx, change_id)?;
                match &q.change {
                    Change::RegisterPatient { id, .. } => cache::forget_patient(tx, *id),
                    Change::Book { id, .. } => cache::forget_appointment(tx, *id, now),
                    Change::AddCoverage { id, patient_id, .. } => {
                        cache::forget_coverage(tx, *patient_id, *id, now)
                    }
                    _ => Ok(()),
                }
            })?;
            Ok(())
        })?;
        self.device.want_upload();
        self.unsent_changes()
    }

    /// A change in conflict, field by field: the user's value and the server's now. Reads
    /// the record from the server (recorded as a view of those fields).
    pub async fn conflict_detail(&self, change_id: Uuid) -> Result<Vec<FieldConflict>, AppError> {
        let (q, generation) =
            self.queued_change(change_id, |s| matches!(s, ChangeState::Conflict { .. }))?;
        let (mine, theirs) = self.current_of(&q.change).await?;
        let fields = q.change.fields();
        let now = self.clock.now_ms();
        self.with_unlocked(generation, |u, proof| {
            let draft = Draft {
                action: AuditAction::View,
                resource_type: q.change.resource_type(),
                resource_id: q.change.record_id().to_string(),
                patient_id: Some(q.change.patient_id()),
                fields: fields.clone(),
                offline: false,
                route: "conflict",
                break_glass: None,
            };
            proof.device().record(&u.key, &u.user, draft, now)
        })?;
        self.device.want_upload();
        Ok(fields
            .into_iter()
            .map(|field| FieldConflict {
                mine: shown(mine.get(&field).cloned()),
                theirs: shown(theirs.get(&field).cloned()),
                field,
            })
            .collect())
    }

    /// The change's values and the server's current record, each as JSON by field name.
    async fn current_of(
        &self,
        change: &Change,
    ) -> Result<
        (
            serde_json::Map<String, serde_json::Value>,
            serde_json::Map<String, serde_json::Value>,
        ),
        AppError,
    > {
        let as_map = |v: serde_json::Value| match v {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        match change {
            Change::UpdatePatient { id, update, .. } => {
                let id = *id;
                let record = self
                    .online_call(|c, t| async move { c.patient_record(&t, id).await })
                    .await?;
                Ok((
                    as_map(serde_json::to_value(&update.fields).unwrap_or_default()),
                    as_map(serde_json::to_value(&record.fields).unwrap_or_default()),
                ))
            }
            Change::ChangeAppointment { id, update, .. } => {
                let id = *id;
                let record = self
                    .online_call(|c, t| async move { c.appointment_record(&t, id).await })
                    .await?;
                Ok((
                    as_map(serde_json::to_value(&update.fields).unwrap_or_default()),
                    as_map(serde_json::to_value(&record.fields).unwrap_or_default()),
                ))
            }
            Change::UpdateCoverage {
                id,
                patient_id,
                coverage,
                ..
            } => {
                let (id, patient_id) = (*id, *patient_id);
                let list = self
                    .online_call(|c, t| async move { c.coverages(&t, patient_id).await })
                    .await?;
                let now = list
                    .coverages
                    .into_iter()
                    .find(|c| c.id == id)
                    .ok_or(AppError::BadInput("change_id"))?;
                Ok((
                    as_map(serde_json::to_value(&coverage.fields).unwrap_or_default()),
                    as_map(serde_json::to_value(&now.fields).unwrap_or_default()),
                ))
            }
            _ => Err(AppError::BadInput("change_id")),
        }
    }

    /// Settles a conflict: the fields in `keep_mine` are sent again on the server's current
    /// version; the others keep the server's value (keeping none is a discard, which
    /// [`Core::discard_change`] does). Both versions stay in the record's history.
    pub async fn resolve_conflict(
        &self,
        change_id: Uuid,
        keep_mine: Vec<String>,
    ) -> Result<ChangeSummary, AppError> {
        let (q, generation) =
            self.queued_change(change_id, |s| matches!(s, ChangeState::Conflict { .. }))?;
        let ChangeState::Conflict {
            current_version, ..
        } = q.state
        else {
            return Err(AppError::BadInput("change_id"));
        };
        let rebased = match q.change {
            Change::UpdatePatient { id, mut update, .. } => {
                update
                    .fields
                    .retain(|name| keep_mine.iter().any(|k| k == name));
                Change::UpdatePatient {
                    id,
                    based_on: current_version,
                    update,
                }
            }
            Change::ChangeAppointment {
                id,
                patient_id,
                mut update,
                ..
            } => {
                update
                    .fields
                    .retain(|name| keep_mine.iter().any(|k| k == name));
                Change::ChangeAppointment {
                    id,
                    patient_id,
                    based_on: current_version,
                    update,
                }
            }
            Change::UpdateCoverage {
                id,
                patient_id,
                mut coverage,
                ..
            } => {
                coverage
                    .fields
                    .retain(|name| keep_mine.iter().any(|k| k == name));
                Change::UpdateCoverage {
                    id,
                    patient_id,
                    based_on: current_version,
                    coverage,
                }
            }
            _ => return Err(AppError::BadInput("change_id")),
        };
        if rebased.fields().is_empty() {
            return Err(AppError::BadInput("keep_mine"));
        }
        self.with_unlocked(generation, |u, _| {
            Ok(changes::replace(u.cache.connection(), change_id, &rebased)?)
        })?;
        self.send_and_tell(change_id).await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::shown;

    /// A conflict shows each value as a person reads it, not as JSON.
    #[test]
    fn values_in_conflict_read_as_text() {
        let cases = [
            (json!("555-0177"), "555-0177"),
            (
                json!({ "given": "Testa", "family": "Quillfeather", "preferred": "" }),
                "Testa Quillfeather",
            ),
            (
                json!({ "line": ["100 Synthetic Lane", "Apt 2"], "city": "Demoville",
                        "state": "ZZ", "postal_code": "01000", "country": "US" }),
                "100 Synthetic Lane, Apt 2, Demoville ZZ 01000, US",
            ),
            (
                json!({ "line": [], "city": "Demoville", "state": "", "postal_code": "",
                        "country": "" }),
                "Demoville",
            ),
            (
                json!({ "name": "Contact of patient 1", "relationship": "spouse", "phone": "555-0210" }),
                "Contact of patient 1 (spouse), 555-0210",
            ),
            (json!(true), "true"),
            (json!(null), ""),
        ];
        for (value, text) in cases {
            assert_eq!(shown(Some(value)), text);
        }
        assert_eq!(shown(None), "");
    }
}
