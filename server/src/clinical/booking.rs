//! The front desk's schedule as records: book an appointment, reschedule it, move its
//! status (arrived, checked in, fulfilled, cancelled with a reason, no-show, entered in
//! error), each change a version with its audit event in one transaction, like a patient's.
//! A practitioner's time is never double-booked, and a check-in opens the visit's
//! encounter, with its own event, in the same transaction.

use clinicdesk_protocol::audit::{AuditAction, Outcome, RecordChange};
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::policy::fields::{Resource, field_access};
use clinicdesk_protocol::wire::{
    AppointmentFields, AppointmentHistory, AppointmentRecord, AppointmentStatus, AppointmentUpdate,
    NewAppointment, PractitionerList, UserInfo,
};
use uuid::Uuid;

use crate::audit::server_chain::{self, ServerEvent};
use crate::clinical::days;
use crate::clinical::records::{self, Created, RecordOf, Writer, Written, text_ok};
use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::state::AppState;
use crate::store::bookings::{self as stored, Columns, StoredAppointment};
use crate::store::{ClinicTx, Store, care_team, clinics, patients};

const RESOURCE: Resource = Resource::Appointment;
const BOOK_ROUTE: &str = "/v1/appointments";
const CHANGE_ROUTE: &str = "/v1/appointments/{appointment_id}";
const TYPES: [&str; 5] = ["routine", "walkin", "checkup", "followup", "emergency"];
const MINUTE_MS: i64 = 60_000;

fn status_str(s: AppointmentStatus) -> &'static str {
    use AppointmentStatus::*;
    match s {
        Booked => "booked",
        Arrived => "arrived",
        CheckedIn => "checked-in",
        Fulfilled => "fulfilled",
        Cancelled => "cancelled",
        NoShow => "noshow",
        EnteredInError => "entered-in-error",
    }
}

fn parse_status(s: &str) -> AppointmentStatus {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).unwrap_or_default()
}

fn encode(fields: &AppointmentFields) -> Result<String, ServerError> {
    serde_json::to_string(fields).map_err(|_| ServerError::Internal("record not encodable"))
}

/// An instant from RFC 3339 (any offset), in UTC milliseconds.
fn instant_ms(start: &str) -> Option<i64> {
    start
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

/// The content as stored; a row from before the record layer is read from its columns.
fn content(stored: &StoredAppointment) -> Result<AppointmentFields, ServerError> {
    if stored.record.version > 0 {
        return serde_json::from_str::<AppointmentFields>(&stored.record.body)
            .map(AppointmentFields::with_defaults)
            .map_err(|_| ServerError::Internal("stored record malformed"));
    }
    let start = jiff::Timestamp::from_millisecond(stored.starts_at_ms)
        .map_err(|_| ServerError::Internal("stored time out of range"))?;
    Ok(AppointmentFields {
        patient_id: Some(stored.patient_id),
        practitioner_id: Some(stored.practitioner_id.unwrap_or_default()),
        start: Some(start.to_string()),
        duration_mins: Some(u32::try_from(stored.duration_mins).unwrap_or(30)),
        appointment_type: Some("routine".into()),
        reason: Some(stored.reason.clone()),
        status: Some(parse_status(&stored.status)),
        cancellation_reason: Some(String::new()),
    })
}

/// The stored content's text, as the next change's `before` hash covers it.
fn stored_body(stored: &StoredAppointment) -> Result<String, ServerError> {
    if stored.record.version > 0 {
        Ok(stored.record.body.clone())
    } else {
        encode(&content(stored)?)
    }
}

fn check_writable(fields: &AppointmentFields, role: Role) -> Result<(), ServerError> {
    records::check_writable_names(RESOURCE, fields.present(), role)
}

/// The values of a complete appointment, each refused by its field's name.
fn validate(f: &AppointmentFields) -> Result<(i64, i64), ServerError> {
    let bad = |field: &'static str| ServerError::BadRequest { field };
    let start = f
        .start
        .as_deref()
        .and_then(instant_ms)
        .ok_or(bad("start"))?;
    let duration = f
        .duration_mins
        .filter(|d| (5..=480).contains(d))
        .ok_or(bad("duration_mins"))?;
    if !f
        .appointment_type
        .as_deref()
        .is_some_and(|t| TYPES.contains(&t))
    {
        return Err(bad("appointment_type"));
    }
    if !f.reason.as_deref().is_some_and(text_ok) {
        return Err(bad("reason"));
    }
    let cancellation = f.cancellation_reason.as_deref().unwrap_or_default();
    if !text_ok(cancellation) {
        return Err(bad("cancellation_reason"));
    }
    if f.status == Some(AppointmentStatus::Cancelled) && cancellation.trim().is_empty() {
        return Err(bad("cancellation_reason"));
    }
    Ok((start, i64::from(duration)))
}

fn columns<'a>(f: &'a AppointmentFields, start_ms: i64, duration: i64) -> Columns<'a> {
    Columns {
        patient_id: f.patient_id.unwrap_or_default(),
        practitioner_id: f.practitioner_id.unwrap_or_default(),
        starts_at_ms: start_ms,
        duration_mins: duration,
        reason: f.reason.as_deref().unwrap_or_default(),
        status: status_str(f.status.unwrap_or_default()),
    }
}

/// A practitioner who may be booked: an active clinician of the clinic.
async fn require_practitioner(tx: &mut ClinicTx, id: Uuid) -> Result<(), ServerError> {
    if care_team::is_active_clinician(tx, id).await? {
        Ok(())
    } else {
        Err(ServerError::BadRequest {
            field: "practitioner_id",
        })
    }
}

/// Refuses a time that overlaps another appointment holding the practitioner's time.
async fn require_free(
    tx: &mut ClinicTx,
    f: &AppointmentFields,
    (start, duration): (i64, i64),
    except: Option<Uuid>,
) -> Result<(), ServerError> {
    let practitioner = f.practitioner_id.unwrap_or_default();
    if stored::overlaps(
        tx,
        practitioner,
        start,
        start + duration * MINUTE_MS,
        except,
    )
    .await?
    {
        return Err(ServerError::Conflict { field: "start" });
    }
    Ok(())
}

/// Books an appointment (status `booked`): version 1 with its `create` event.
pub async fn book(
    state: &AppState,
    scope: &ClinicScope,
    by: Writer<'_>,
    new: NewAppointment,
) -> Result<Written, ServerError> {
    let NewAppointment { id, fields } = new;
    check_writable(&fields, by.user.role)?;
    for (field, missing) in [
        ("patient_id", fields.patient_id.is_none()),
        ("practitioner_id", fields.practitioner_id.is_none()),
        ("start", fields.start.is_none()),
        ("duration_mins", fields.duration_mins.is_none()),
    ] {
        if missing {
            return Err(ServerError::BadRequest { field });
        }
    }
    if fields
        .status
        .is_some_and(|s| s != AppointmentStatus::Booked)
    {
        return Err(ServerError::BadRequest { field: "status" });
    }
    let mut content = fields;
    content.appointment_type = content
        .appointment_type
        .filter(|t| !t.is_empty())
        .or_else(|| Some("routine".into()));
    let mut content = content.with_defaults();
    let times = validate(&content)?;
    // Stored in UTC; answers carry the clinic's offset.
    content.start = Some(
        jiff::Timestamp::from_millisecond(times.0)
            .map_err(|_| ServerError::BadRequest { field: "start" })?
            .to_string(),
    );

    let mut tx = state.store.clinic_tx(scope).await?;
    clinics::lock_clinic(&mut tx, scope.clinic_id()).await?;
    if let Some(w) = records::replayed(&mut tx, &by, RESOURCE, id).await? {
        return Ok(w);
    }
    if let Some(id) = id
        && (id.is_nil() || stored::appointment(&mut tx, id).await?.is_some())
    {
        return Err(ServerError::Conflict { field: "id" });
    }
    let patient_id = content.patient_id.unwrap_or_default();
    if !patients::patient_exists(&mut tx, patient_id).await? {
        return Err(ServerError::BadRequest {
            field: "patient_id",
        });
    }
    require_practitioner(&mut tx, content.practitioner_id.unwrap_or_default()).await?;
    require_free(&mut tx, &content, times, None).await?;
    let id = id.unwrap_or_else(Uuid::now_v7);
    insert_new(&mut tx, state, scope, &by, id, &content, times, BOOK_ROUTE).await?;
    tx.commit().await?;
    Ok(Written { id, version: 1 })
}

/// Stores a new appointment as version 1 with its `create` event, in the caller's
/// transaction.
#[allow(clippy::too_many_arguments)]
async fn insert_new(
    tx: &mut ClinicTx,
    state: &AppState,
    scope: &ClinicScope,
    by: &Writer<'_>,
    id: Uuid,
    content: &AppointmentFields,
    times: (i64, i64),
    route: &str,
) -> Result<(), ServerError> {
    let body = encode(content)?;
    stored::insert(tx, id, &body, &columns(content, times.0, times.1)).await?;
    let record = RecordOf {
        resource: RESOURCE,
        id,
        patient_id: content.patient_id.unwrap_or_default(),
    };
    let fields = content.present();
    let route_body = (body, route);
    records::store_first_version(
        tx,
        state,
        scope,
        by,
        record,
        &fields,
        route_body,
        String::new(),
    )
    .await
}

/// The id a source appointment takes in the clinic: the same on every import of it, so a
/// second import finds it and changes nothing.
pub fn imported_id(clinic: Uuid, source_id: &str) -> Uuid {
    Uuid::new_v5(&clinic, format!("Appointment/{source_id}").as_bytes())
}

/// Imports a source appointment, its patient and practitioner already resolved (version 1,
/// in its source status, with its `create` event), checked as a booking is, in the caller's
/// transaction, which holds the clinic's lock. One that still holds the practitioner's time
/// (booked or arrived) must not overlap another. One imported before is left as it is.
pub async fn import_in(
    tx: &mut ClinicTx,
    state: &AppState,
    scope: &ClinicScope,
    by: &Writer<'_>,
    source_id: &str,
    mut fields: AppointmentFields,
) -> Result<Created, ServerError> {
    let id = imported_id(scope.clinic_id(), source_id);
    if stored::appointment(tx, id).await?.is_some() {
        return Ok(Created::AlreadyImported(id));
    }
    if fields.appointment_type.as_deref().is_none_or(str::is_empty) {
        fields.appointment_type = Some("routine".into());
    }
    let mut content = fields.with_defaults();
    let times = validate(&content)?;
    content.start = Some(
        jiff::Timestamp::from_millisecond(times.0)
            .map_err(|_| ServerError::BadRequest { field: "start" })?
            .to_string(),
    );
    if !patients::patient_exists(tx, content.patient_id.unwrap_or_default()).await? {
        return Err(ServerError::BadRequest {
            field: "patient_id",
        });
    }
    require_practitioner(tx, content.practitioner_id.unwrap_or_default()).await?;
    let holds_time = matches!(
        content.status,
        Some(AppointmentStatus::Booked | AppointmentStatus::Arrived | AppointmentStatus::CheckedIn)
    );
    if holds_time {
        require_free(tx, &content, times, None).await?;
    }
    insert_new(
        tx,
        state,
        scope,
        by,
        id,
        &content,
        times,
        records::IMPORT_ROUTE,
    )
    .await?;
    Ok(Created::New(id))
}

/// Changes an appointment still at `based_on`: its time, practitioner, type or reason, or
/// its status along FHIR's course; checking in opens its encounter.
pub async fn change(
    state: &AppState,
    scope: &ClinicScope,
    by: Writer<'_>,
    id: Uuid,
    based_on: u64,
    update: AppointmentUpdate,
) -> Result<Written, ServerError> {
    let AppointmentUpdate {
        fields,
        reason_for_change,
    } = update;
    check_writable(&fields, by.user.role)?;
    if fields.present().is_empty() {
        return Err(ServerError::BadRequest { field: "fields" });
    }
    let reason_for_change = reason_for_change.into_inner();
    if !text_ok(&reason_for_change) {
        return Err(ServerError::BadRequest {
            field: "reason_for_change",
        });
    }

    let mut tx = state.store.clinic_tx(scope).await?;
    clinics::lock_clinic(&mut tx, scope.clinic_id()).await?;
    if let Some(w) = records::replayed(&mut tx, &by, RESOURCE, Some(id)).await? {
        return Ok(w);
    }
    let stored = stored::appointment(&mut tx, id)
        .await?
        .ok_or(ServerError::NotFound)?;
    if stored.record.version != based_on {
        let of = RecordOf {
            resource: RESOURCE,
            id,
            patient_id: stored.patient_id,
        };
        let names = AppointmentFields::NAMES;
        let version = stored.record.version;
        return Err(records::stale(&mut tx, of, names, based_on, version, by.user.role).await?);
    }
    let before = content(&stored)?;
    if fields
        .patient_id
        .is_some_and(|p| Some(p) != before.patient_id)
    {
        return Err(ServerError::BadRequest {
            field: "patient_id",
        });
    }
    let mut after = before.clone();
    after.apply(&fields);
    let times = validate(&after)?;
    after.start = Some(
        jiff::Timestamp::from_millisecond(times.0)
            .map_err(|_| ServerError::BadRequest { field: "start" })?
            .to_string(),
    );
    let changed = before.differing(&after);
    if changed.is_empty() {
        return Ok(Written {
            id,
            version: based_on,
        });
    }
    let (from, to) = (
        before.status.unwrap_or_default(),
        after.status.unwrap_or_default(),
    );
    if !from.may_become(to) {
        return Err(ServerError::BadRequest { field: "status" });
    }
    if changed.contains(&"practitioner_id") {
        require_practitioner(&mut tx, after.practitioner_id.unwrap_or_default()).await?;
    }
    let moves = ["start", "duration_mins", "practitioner_id"]
        .iter()
        .any(|f| changed.contains(f));
    if to.holds_time() && (moves || !from.holds_time()) {
        require_free(&mut tx, &after, times, Some(id)).await?;
    }
    let body = encode(&after)?;
    if !stored::update(
        &mut tx,
        id,
        based_on,
        &body,
        &columns(&after, times.0, times.1),
    )
    .await?
    {
        return Err(ServerError::Internal(
            "appointment changed under the clinic lock",
        ));
    }
    let version = based_on + 1;
    let patient_id = after.patient_id.unwrap_or_default();
    let record = RecordOf {
        resource: RESOURCE,
        id,
        patient_id,
    };
    let change = RecordChange {
        version,
        before: Some(records::content_hash(&stored_body(&stored)?)),
        after: records::content_hash(&body),
    };
    let event = records::change_event(
        &by,
        AuditAction::Update,
        record,
        &changed,
        change,
        CHANGE_ROUTE,
    );
    records::store_version(&mut tx, state, scope, &by, event, body, reason_for_change).await?;
    if to == AppointmentStatus::CheckedIn && from != to && stored.encounter_id.is_none() {
        open_encounter(&mut tx, state, scope, &by, patient_id, id).await?;
    }
    tx.commit().await?;
    Ok(Written { id, version })
}

/// The encounter a check-in begins, with its `create` event of `Encounter`.
async fn open_encounter(
    tx: &mut ClinicTx,
    state: &AppState,
    scope: &ClinicScope,
    by: &Writer<'_>,
    patient_id: Uuid,
    appointment_id: Uuid,
) -> Result<(), ServerError> {
    let encounter = Uuid::now_v7();
    stored::insert_encounter(
        tx,
        encounter,
        patient_id,
        appointment_id,
        state.clock.now_ms(),
    )
    .await?;
    let event = ServerEvent {
        actor_user_id: by.user.user_id,
        actor_role: by.user.role,
        action: AuditAction::Create,
        resource_type: "Encounter".to_owned(),
        resource_id: encounter.to_string(),
        patient_id: Some(patient_id),
        fields: vec!["appointment_id".to_owned()],
        outcome: Outcome::Success,
        route: CHANGE_ROUTE.to_owned(),
        break_glass: None,
        request: by.seen.clone(),
        change: None,
    };
    server_chain::record_in(tx, state, scope, vec![event]).await?;
    Ok(())
}

/// Who can be booked: the clinic's active clinicians.
pub async fn practitioners(
    store: &Store,
    scope: &ClinicScope,
) -> Result<PractitionerList, ServerError> {
    let mut tx = store.clinic_tx(scope).await?;
    let practitioners = care_team::active_clinicians(&mut tx).await?;
    tx.commit().await?;
    Ok(PractitionerList { practitioners })
}

/// Cuts `fields` to what `role` may read, with the start in the clinic's time zone.
fn presented(
    mut fields: AppointmentFields,
    role: Role,
    tz: &jiff::tz::TimeZone,
) -> Result<AppointmentFields, ServerError> {
    if let Some(ms) = fields.start.as_deref().and_then(instant_ms) {
        fields.start = Some(days::local_rfc3339(tz, ms)?);
    }
    fields.retain(|name| field_access(role, RESOURCE, name).reads());
    Ok(fields)
}

/// The appointment as `user` may read it.
pub async fn record(
    store: &Store,
    scope: &ClinicScope,
    user: &UserInfo,
    id: Uuid,
) -> Result<AppointmentRecord, ServerError> {
    let tz = days::stored_zone(&store.clinic_time_zone(scope).await?);
    let mut tx = store.clinic_tx(scope).await?;
    let stored = stored::appointment(&mut tx, id).await?;
    tx.commit().await?;
    let stored = stored.ok_or(ServerError::NotFound)?;
    Ok(AppointmentRecord {
        id,
        version: stored.record.version,
        fields: presented(content(&stored)?, user.role, &tz)?,
        encounter_id: stored.encounter_id,
    })
}

/// Checks, for `audit verify`, that the columns the schedule, the day list and the
/// double-booking check read (patient, practitioner, start, duration, reason, status) agree
/// with each appointment's content. A row from before the record layer (version 0) has only
/// its columns, and nothing to check them against.
pub async fn check_derived(
    store: &Store,
    console: &crate::scope::Console,
) -> Result<Vec<records::Disagreement>, ServerError> {
    let mut found = Vec::new();
    for clinic in crate::store::field_keys::clinic_ids(store).await? {
        let scope = ClinicScope::of_console(console, clinic);
        let mut tx = store.clinic_tx(&scope).await?;
        let rows = stored::of_clinic(&mut tx).await?;
        tx.commit().await?;
        for (id, a) in rows.iter().filter(|(_, a)| a.record.version > 0) {
            let mut disagree = |column: &'static str| {
                found.push(records::Disagreement {
                    clinic_id: clinic,
                    resource: "appointment",
                    id: id.to_string(),
                    column,
                });
            };
            let content = serde_json::from_str::<AppointmentFields>(&a.record.body)
                .map(AppointmentFields::with_defaults);
            let Some((fields, (start, duration))) =
                content.ok().and_then(|f| validate(&f).ok().map(|t| (f, t)))
            else {
                disagree("record");
                continue;
            };
            let want = columns(&fields, start, duration);
            if a.patient_id != want.patient_id {
                disagree("patient_id");
            }
            if a.practitioner_id != Some(want.practitioner_id) {
                disagree("practitioner_id");
            }
            if a.starts_at_ms != want.starts_at_ms {
                disagree("starts_at_ms");
            }
            if a.duration_mins != want.duration_mins {
                disagree("duration_mins");
            }
            if a.reason != want.reason {
                disagree("reason");
            }
            if a.status != want.status {
                disagree("status");
            }
        }
    }
    Ok(found)
}

/// The patient's appointments, earliest first, as `user` may read them.
pub async fn of_patient(
    store: &Store,
    scope: &ClinicScope,
    user: &UserInfo,
    patient_id: Uuid,
) -> Result<Vec<AppointmentRecord>, ServerError> {
    let tz = days::stored_zone(&store.clinic_time_zone(scope).await?);
    let mut tx = store.clinic_tx(scope).await?;
    let rows = stored::of_patient(&mut tx, patient_id).await?;
    tx.commit().await?;
    rows.into_iter()
        .map(|(id, stored)| {
            Ok(AppointmentRecord {
                id,
                version: stored.record.version,
                fields: presented(content(&stored)?, user.role, &tz)?,
                encounter_id: stored.encounter_id,
            })
        })
        .collect()
}

/// Every version of the appointment, oldest first, each cut to what `user` may read.
pub async fn history(
    store: &Store,
    scope: &ClinicScope,
    user: &UserInfo,
    id: Uuid,
) -> Result<AppointmentHistory, ServerError> {
    let tz = days::stored_zone(&store.clinic_time_zone(scope).await?);
    let mut tx = store.clinic_tx(scope).await?;
    let appointment = stored::appointment(&mut tx, id).await?;
    let rows = crate::store::records::versions(&mut tx, RESOURCE.as_str(), id).await?;
    tx.commit().await?;
    let patient_id = appointment.ok_or(ServerError::NotFound)?.patient_id;
    let versions = records::versions_as_read(rows, RESOURCE, user.role, |body| {
        let fields: AppointmentFields = serde_json::from_str(body)
            .map_err(|_| ServerError::Internal("stored record malformed"))?;
        presented(fields, user.role, &tz)
    })?;
    Ok(AppointmentHistory {
        id,
        patient_id,
        versions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_follows_fhirs_course() {
        use AppointmentStatus::*;
        assert!(Booked.may_become(CheckedIn));
        assert!(Arrived.may_become(CheckedIn));
        assert!(CheckedIn.may_become(Fulfilled));
        assert!(!Cancelled.may_become(Booked));
        assert!(!Fulfilled.may_become(NoShow));
        assert!(NoShow.may_become(EnteredInError));
        assert!(!EnteredInError.may_become(Booked));
        for s in [
            Booked,
            Arrived,
            CheckedIn,
            Fulfilled,
            Cancelled,
            NoShow,
            EnteredInError,
        ] {
            assert_eq!(parse_status(status_str(s)), s);
        }
    }
}
