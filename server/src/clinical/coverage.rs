//! A patient's insurance coverages, on the record layer's rules: added by the front desk or
//! billing, corrected with `If-Match`, never deleted (marked inactive), each change a
//! version with its audit event in one transaction, every read and write cut to the field
//! table.

use clinicdesk_protocol::audit::{AuditAction, RecordChange};
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::policy::fields::{Resource, field_access};
use clinicdesk_protocol::wire::{
    CoverageChange, CoverageFields, CoverageHistory, CoverageList, CoverageRecord, UserInfo,
};
use uuid::Uuid;

use crate::clinical::records::{self, Created, RecordOf, Writer, Written, text_ok};
use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::state::AppState;
use crate::store::coverages::{self as stored, StoredCoverage};
use crate::store::{ClinicTx, Store, clinics, patients};

const RESOURCE: Resource = Resource::Coverage;
const ADD_ROUTE: &str = "/v1/patients/{patient_id}/coverages";
const CHANGE_ROUTE: &str = "/v1/coverages/{coverage_id}";

fn encode(fields: &CoverageFields) -> Result<String, ServerError> {
    serde_json::to_string(fields).map_err(|_| ServerError::Internal("record not encodable"))
}

fn decode(body: &str) -> Result<CoverageFields, ServerError> {
    serde_json::from_str::<CoverageFields>(body)
        .map(CoverageFields::filled)
        .map_err(|_| ServerError::Internal("stored record malformed"))
}

/// The content a seeded coverage starts with (version 0, before it has a history).
pub fn seeded_content(fields: CoverageFields) -> Result<String, ServerError> {
    encode(&fields.filled())
}

fn readable(mut fields: CoverageFields, role: Role) -> CoverageFields {
    fields.retain(|name| field_access(role, RESOURCE, name).reads());
    fields
}

/// The values of a coverage, each refused by its field's name.
fn validate(f: &CoverageFields) -> Result<(), ServerError> {
    let bad = |field: &'static str| Err(ServerError::BadRequest { field });
    for (field, value) in [
        ("payer", &f.payer),
        ("member_id", &f.member_id),
        ("group", &f.group),
    ] {
        if value
            .as_deref()
            .is_some_and(|v| !text_ok(v) || v.chars().count() > 100)
        {
            return bad(field);
        }
    }
    let date = time::macros::format_description!("[year]-[month]-[day]");
    let parse = |v: &Option<String>| -> Result<Option<time::Date>, ()> {
        match v.as_deref() {
            None | Some("") => Ok(None),
            Some(s) => time::Date::parse(s, date).map(Some).map_err(|_| ()),
        }
    };
    let Ok(start) = parse(&f.period_start) else {
        return bad("period_start");
    };
    let Ok(end) = parse(&f.period_end) else {
        return bad("period_end");
    };
    if let (Some(s), Some(e)) = (start, end)
        && e < s
    {
        return bad("period_end");
    }
    Ok(())
}

async fn require_patient(tx: &mut ClinicTx, patient_id: Uuid) -> Result<(), ServerError> {
    if patients::patient_exists(tx, patient_id).await? {
        Ok(())
    } else {
        Err(ServerError::NotFound)
    }
}

/// Adds a coverage to the patient: version 1 with its `create` event.
pub async fn add(
    state: &AppState,
    scope: &ClinicScope,
    by: Writer<'_>,
    patient_id: Uuid,
    change: CoverageChange,
) -> Result<Written, ServerError> {
    let CoverageChange { fields, reason } = change;
    records::check_writable_names(RESOURCE, fields.present(), by.user.role)?;
    for (field, value) in [("payer", &fields.payer), ("member_id", &fields.member_id)] {
        if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
            return Err(ServerError::BadRequest { field });
        }
    }
    validate(&fields)?;
    let content = fields.filled();
    let mut tx = state.store.clinic_tx(scope).await?;
    clinics::lock_clinic(&mut tx, scope.clinic_id()).await?;
    if let Some(w) = records::replayed(&mut tx, &by, RESOURCE, None).await? {
        return Ok(w);
    }
    require_patient(&mut tx, patient_id).await?;
    let id = Uuid::now_v7();
    let reason = reason.into_inner();
    insert_new(
        &mut tx,
        state,
        scope,
        &by,
        (id, patient_id),
        content,
        ADD_ROUTE,
        reason,
    )
    .await?;
    tx.commit().await?;
    Ok(Written { id, version: 1 })
}

/// Stores a new coverage `(id, patient)` as version 1 with its `create` event, in the
/// caller's transaction.
#[allow(clippy::too_many_arguments)]
async fn insert_new(
    tx: &mut ClinicTx,
    state: &AppState,
    scope: &ClinicScope,
    by: &Writer<'_>,
    (id, patient_id): (Uuid, Uuid),
    content: CoverageFields,
    route: &str,
    reason: String,
) -> Result<(), ServerError> {
    let body = encode(&content)?;
    stored::insert(tx, id, patient_id, &body).await?;
    let record = RecordOf {
        resource: RESOURCE,
        id,
        patient_id,
    };
    let fields = content.present();
    records::store_first_version(tx, state, scope, by, record, &fields, (body, route), reason).await
}

/// The id a source coverage takes in the clinic: the same on every import of it, so a
/// second import finds it and changes nothing.
pub fn imported_id(clinic: Uuid, source_id: &str) -> Uuid {
    Uuid::new_v5(&clinic, format!("Coverage/{source_id}").as_bytes())
}

/// Imports a source coverage of `patient_id` (version 1 with its `create` event), checked
/// as an addition through the API is, in the caller's transaction, which holds the clinic's
/// lock. One imported before is left as it is.
#[allow(clippy::too_many_arguments)]
pub async fn import_in(
    tx: &mut ClinicTx,
    state: &AppState,
    scope: &ClinicScope,
    by: &Writer<'_>,
    source_id: &str,
    patient_id: Uuid,
    fields: CoverageFields,
) -> Result<Created, ServerError> {
    let id = imported_id(scope.clinic_id(), source_id);
    if stored::coverage(tx, id).await?.is_some() {
        return Ok(Created::AlreadyImported(id));
    }
    for (field, value) in [("payer", &fields.payer), ("member_id", &fields.member_id)] {
        if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
            return Err(ServerError::BadRequest { field });
        }
    }
    validate(&fields)?;
    require_patient(tx, patient_id).await?;
    let content = fields.filled();
    insert_new(
        tx,
        state,
        scope,
        by,
        (id, patient_id),
        content,
        records::IMPORT_ROUTE,
        String::new(),
    )
    .await?;
    Ok(Created::New(id))
}

/// Changes the fields `change` carries, if the coverage is still at `based_on`.
pub async fn change(
    state: &AppState,
    scope: &ClinicScope,
    by: Writer<'_>,
    id: Uuid,
    based_on: u64,
    change: CoverageChange,
) -> Result<Written, ServerError> {
    let CoverageChange { fields, reason } = change;
    records::check_writable_names(RESOURCE, fields.present(), by.user.role)?;
    if fields.present().is_empty() {
        return Err(ServerError::BadRequest { field: "fields" });
    }
    let reason = reason.into_inner();
    if !text_ok(&reason) {
        return Err(ServerError::BadRequest { field: "reason" });
    }
    let mut tx = state.store.clinic_tx(scope).await?;
    clinics::lock_clinic(&mut tx, scope.clinic_id()).await?;
    if let Some(w) = records::replayed(&mut tx, &by, RESOURCE, Some(id)).await? {
        return Ok(w);
    }
    let current = stored::coverage(&mut tx, id)
        .await?
        .ok_or(ServerError::NotFound)?;
    if current.record.version != based_on {
        let of = RecordOf {
            resource: RESOURCE,
            id,
            patient_id: current.patient_id,
        };
        let names = CoverageFields::NAMES;
        let version = current.record.version;
        return Err(records::stale(&mut tx, of, names, based_on, version, by.user.role).await?);
    }
    let before = decode(&current.record.body)?;
    let mut after = before.clone();
    after.apply(&fields);
    validate(&after)?;
    let changed = before.differing(&after);
    if changed.is_empty() {
        return Ok(Written {
            id,
            version: based_on,
        });
    }
    if after.payer.as_deref().is_none_or(|p| p.trim().is_empty()) {
        return Err(ServerError::BadRequest { field: "payer" });
    }
    let body = encode(&after)?;
    if !stored::update(&mut tx, id, based_on, &body).await? {
        return Err(ServerError::Internal(
            "coverage changed under the clinic lock",
        ));
    }
    let version = based_on + 1;
    let change = RecordChange {
        version,
        before: Some(records::content_hash(&current.record.body)),
        after: records::content_hash(&body),
    };
    let record = RecordOf {
        resource: RESOURCE,
        id,
        patient_id: current.patient_id,
    };
    let event = records::change_event(
        &by,
        AuditAction::Update,
        record,
        &changed,
        change,
        CHANGE_ROUTE,
    );
    records::store_version(&mut tx, state, scope, &by, event, body, reason).await?;
    tx.commit().await?;
    Ok(Written { id, version })
}

fn presented(id: Uuid, c: StoredCoverage, role: Role) -> Result<CoverageRecord, ServerError> {
    Ok(CoverageRecord {
        id,
        patient_id: c.patient_id,
        version: c.record.version,
        fields: readable(decode(&c.record.body)?, role),
    })
}

/// The patient's coverages as `user` may read them.
pub async fn list(
    store: &Store,
    scope: &ClinicScope,
    user: &UserInfo,
    patient_id: Uuid,
) -> Result<CoverageList, ServerError> {
    let mut tx = store.clinic_tx(scope).await?;
    let list = list_in(&mut tx, user, patient_id).await?;
    tx.commit().await?;
    Ok(list)
}

/// [`list`] in the caller's transaction.
pub(crate) async fn list_in(
    tx: &mut ClinicTx,
    user: &UserInfo,
    patient_id: Uuid,
) -> Result<CoverageList, ServerError> {
    require_patient(tx, patient_id).await?;
    let rows = stored::of_patient(tx, patient_id).await?;
    let coverages = rows
        .into_iter()
        .map(|(id, c)| presented(id, c, user.role))
        .collect::<Result<_, ServerError>>()?;
    Ok(CoverageList {
        patient_id,
        coverages,
    })
}

/// Every version of the coverage, oldest first, each cut to what `user` may read.
pub async fn history(
    store: &Store,
    scope: &ClinicScope,
    user: &UserInfo,
    id: Uuid,
) -> Result<CoverageHistory, ServerError> {
    let mut tx = store.clinic_tx(scope).await?;
    let coverage = stored::coverage(&mut tx, id).await?;
    let rows = crate::store::records::versions(&mut tx, RESOURCE.as_str(), id).await?;
    tx.commit().await?;
    let patient_id = coverage.ok_or(ServerError::NotFound)?.patient_id;
    let role = user.role;
    let versions = records::versions_as_read(rows, RESOURCE, role, |body| {
        Ok(readable(decode(body)?, role))
    })?;
    Ok(CoverageHistory {
        id,
        patient_id,
        versions,
    })
}
