//! The practitioner directory: the old system's practitioners as an import found them, each
//! linked by an admin to the clinician's own account. An import never makes an account:
//! a sign-in nobody vouched for, with no password its owner chose, is not something a
//! clinic's export should be able to create. Entries are records like the others (each
//! change a version with its audit event, in one transaction); they are workforce data,
//! not a patient's, so their events name no patient.

use clinicdesk_protocol::audit::{AuditAction, Outcome, RecordChange};
use clinicdesk_protocol::fhir_records::SourcePractitioner;
use clinicdesk_protocol::wire::{DirectoryEntry, DirectoryLink, PractitionerDirectory};
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::audit::server_chain::ServerEvent;
use crate::clinical::records::{self, Created, Writer, Written};
use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::state::AppState;
use crate::store::directory::{self as stored, StoredEntry};
use crate::store::{ClinicTx, care_team, clinics};

/// The resource type of the entries' versions and events.
pub const RESOURCE_TYPE: &str = "Practitioner";
const IMPORT_ROUTE: &str = "import";
const LINK_ROUTE: &str = "/v1/practitioner-directory/{entry_id}";

/// An entry's stored content (what its versions hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Content {
    name: String,
    npi: String,
    active: bool,
    user_id: Option<Uuid>,
}

fn encode(c: &Content) -> Result<String, ServerError> {
    serde_json::to_string(c).map_err(|_| ServerError::Internal("record not encodable"))
}

fn decode(body: &str) -> Result<Content, ServerError> {
    serde_json::from_str(body).map_err(|_| ServerError::Internal("stored record malformed"))
}

/// The source key of a source practitioner's id.
pub fn source_key(source_id: &str) -> String {
    format!("{RESOURCE_TYPE}/{source_id}")
}

fn event(
    by: &Writer<'_>,
    action: AuditAction,
    id: Uuid,
    fields: &[&str],
    change: RecordChange,
    route: &str,
) -> ServerEvent {
    ServerEvent {
        actor_user_id: by.user.user_id,
        actor_role: by.user.role,
        action,
        resource_type: RESOURCE_TYPE.to_owned(),
        resource_id: id.to_string(),
        patient_id: None,
        fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        outcome: Outcome::Success,
        route: route.to_owned(),
        break_glass: None,
        request: by.seen.clone(),
        change: Some(change),
    }
}

/// Adds the source practitioner to the directory (version 1 with its `create` event), in
/// the caller's transaction, which holds the clinic's lock; one imported before is left as
/// it is.
pub async fn import_in(
    tx: &mut ClinicTx,
    state: &AppState,
    scope: &ClinicScope,
    by: &Writer<'_>,
    source: &SourcePractitioner,
) -> Result<Created, ServerError> {
    let key = source_key(&source.id);
    if let Some(here) = stored::by_source(tx, &key).await? {
        return Ok(Created::AlreadyImported(here.id));
    }
    let content = Content {
        name: source.name.clone(),
        npi: source.npi.clone(),
        active: source.active,
        user_id: None,
    };
    if !records::text_ok(&content.name) || content.name.chars().count() > 200 {
        return Err(ServerError::BadRequest { field: "name" });
    }
    if !content.npi.is_empty() && !npi_ok(&content.npi) {
        return Err(ServerError::BadRequest { field: "npi" });
    }
    let id = Uuid::now_v7();
    let body = encode(&content)?;
    stored::insert(tx, id, &key, &body).await?;
    let change = RecordChange {
        version: 1,
        before: None,
        after: records::content_hash(&body),
    };
    let fields = ["name", "npi", "active"];
    let e = event(by, AuditAction::Create, id, &fields, change, IMPORT_ROUTE);
    records::store_version(tx, state, scope, by, e, body, String::new()).await?;
    Ok(Created::New(id))
}

/// The clinic's directory by NPI: each NPI's entry's linked account (`None` while
/// unlinked), or `Err(())` for an NPI that more than one entry carries.
pub async fn links_by_npi(
    tx: &mut ClinicTx,
) -> Result<HashMap<String, Result<Option<Uuid>, ()>>, ServerError> {
    let mut out: HashMap<String, Result<Option<Uuid>, ()>> = HashMap::new();
    for entry in stored::all(tx).await? {
        let c = decode(&entry.record.body)?;
        if c.npi.is_empty() {
            continue;
        }
        out.entry(c.npi)
            .and_modify(|found| *found = Err(()))
            .or_insert(Ok(c.user_id));
    }
    Ok(out)
}

/// An NPI: ten digits.
fn npi_ok(npi: &str) -> bool {
    npi.len() == 10 && npi.bytes().all(|b| b.is_ascii_digit())
}

fn presented(entry: StoredEntry) -> Result<DirectoryEntry, ServerError> {
    let c = decode(&entry.record.body)?;
    Ok(DirectoryEntry {
        id: entry.id,
        version: entry.record.version,
        source: entry.source_key,
        name: c.name,
        npi: c.npi,
        active: c.active,
        user_id: c.user_id,
    })
}

/// The clinic's directory, by name.
pub async fn list(
    state: &AppState,
    scope: &ClinicScope,
) -> Result<PractitionerDirectory, ServerError> {
    let mut tx = state.store.clinic_tx(scope).await?;
    let rows = stored::all(&mut tx).await?;
    tx.commit().await?;
    let mut entries = rows
        .into_iter()
        .map(presented)
        .collect::<Result<Vec<_>, _>>()?;
    entries.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    Ok(PractitionerDirectory { entries })
}

/// Links the entry (still at `based_on`) to a clinician's account of the clinic, or
/// unlinks it. An account stands for one entry at most.
pub async fn link(
    state: &AppState,
    scope: &ClinicScope,
    by: Writer<'_>,
    id: Uuid,
    based_on: u64,
    link: DirectoryLink,
) -> Result<Written, ServerError> {
    let mut tx = state.store.clinic_tx(scope).await?;
    clinics::lock_clinic(&mut tx, scope.clinic_id()).await?;
    let current = stored::entry(&mut tx, id)
        .await?
        .ok_or(ServerError::NotFound)?;
    let version = current.record.version;
    if version != based_on {
        let fields = if decode(&current.record.body)?.user_id == link.user_id {
            vec![]
        } else {
            vec!["user_id"]
        };
        return Err(ServerError::StaleVersion {
            current_version: version,
            fields,
        });
    }
    let before = decode(&current.record.body)?;
    if before.user_id == link.user_id {
        return Ok(Written { id, version });
    }
    if let Some(user) = link.user_id {
        if !care_team::is_active_clinician(&mut tx, user).await? {
            return Err(ServerError::BadRequest { field: "user_id" });
        }
        if stored::of_user(&mut tx, user)
            .await?
            .is_some_and(|e| e != id)
        {
            return Err(ServerError::Conflict { field: "user_id" });
        }
    }
    let after = Content {
        user_id: link.user_id,
        ..before
    };
    let body = encode(&after)?;
    if !stored::update(&mut tx, id, based_on, &body, after.user_id).await? {
        return Err(ServerError::Internal("entry changed under the clinic lock"));
    }
    let change = RecordChange {
        version: version + 1,
        before: Some(records::content_hash(&current.record.body)),
        after: records::content_hash(&body),
    };
    let e = event(
        &by,
        AuditAction::Update,
        id,
        &["user_id"],
        change,
        LINK_ROUTE,
    );
    records::store_version(&mut tx, state, scope, &by, e, body, String::new()).await?;
    tx.commit().await?;
    Ok(Written {
        id,
        version: version + 1,
    })
}
