//! The records' history against the trail: every stored version is the one its audit event
//! committed to (same record, version and content hash), every change the trail records
//! has its version in the history, and each record's current content is its latest
//! version. So editing, removing or adding history afterwards is found like editing the
//! trail.

use std::collections::HashMap;

use clinicdesk_protocol::audit::{AuditEvent, Hash32, RecordChange};
use uuid::Uuid;

use super::{Location, Problem, VerifyError, Walk};
use crate::scope::ClinicScope;
use crate::store::{Store, records};

/// What one logged change committed to.
struct Committed {
    resource_type: String,
    resource_id: String,
    patient_id: Option<Uuid>,
    change: RecordChange,
    leaf_index: u64,
}

/// The changes the walk met in the clinic's log, by event id.
#[derive(Default)]
pub(super) struct Changes(HashMap<Uuid, Committed>);

impl Changes {
    pub(super) fn note(&mut self, event: &AuditEvent, leaf_index: u64) {
        if let Some(change) = event.change {
            self.0.insert(
                event.id,
                Committed {
                    resource_type: event.resource_type.clone(),
                    resource_id: event.resource_id.clone(),
                    patient_id: event.patient_id,
                    change,
                    leaf_index,
                },
            );
        }
    }
}

fn content_hash(body: &str) -> Hash32 {
    Hash32::of_canonical(body.as_bytes())
}

pub(super) async fn verify_records(
    store: &Store,
    scope: &ClinicScope,
    walk: &mut Walk<'_>,
    mut changes: Changes,
) -> Result<(), VerifyError> {
    let mut tx = store.clinic_tx(scope).await?;
    let (versions, current) = records::record_versions_as_stored(&mut tx).await?;
    tx.commit().await.map_err(crate::error::ServerError::from)?;

    // The latest version of each record: (version, content hash).
    let mut latest: HashMap<(String, String), (i64, Hash32)> = HashMap::new();
    for row in versions {
        let resource_type = row.resource_type.clone().unwrap_or_default();
        let record_id = row.record_id.clone().unwrap_or_default();
        let here = Location::Version {
            resource_type: resource_type.clone(),
            record_id: record_id.clone(),
            version: row.version.unwrap_or(-1),
        };
        let (Some(body), Some(version)) = (row.body.as_deref(), row.version) else {
            walk.note(here, Problem::Unreadable("body"));
            continue;
        };
        let hash = content_hash(body);
        let newest = latest
            .entry((resource_type.clone(), record_id.clone()))
            .or_insert((version, hash));
        if version >= newest.0 {
            *newest = (version, hash);
        }
        let event_id = row.audit_event_id.as_deref().map(Uuid::parse_str);
        let Some(Ok(event_id)) = event_id else {
            walk.note(here, Problem::Unreadable("audit_event_id"));
            continue;
        };
        let Some(committed) = changes.0.remove(&event_id) else {
            walk.note(here, Problem::VersionUnrecorded);
            continue;
        };
        let patient = row.patient_id.as_deref();
        let columns = [
            ("resource_type", resource_type == committed.resource_type),
            ("record_id", record_id == committed.resource_id),
            (
                "version",
                u64::try_from(version).ok() == Some(committed.change.version),
            ),
            (
                "patient_id",
                patient.map(str::to_owned) == committed.patient_id.map(|p| p.to_string()),
            ),
        ];
        for (column, matches) in columns {
            if !matches {
                walk.note(here.clone(), Problem::Column(column));
            }
        }
        if hash != committed.change.after {
            walk.note(here, Problem::VersionContent);
        }
    }
    for (event_id, committed) in changes.0 {
        walk.note(
            Location::Event {
                event_id,
                leaf_index: committed.leaf_index,
            },
            Problem::VersionMissing,
        );
    }
    for row in current {
        let id = row.id.unwrap_or_default();
        let here = Location::Record {
            resource_type: row.resource_type.to_owned(),
            record_id: id.clone(),
        };
        let (Some(version), Some(record)) = (row.version, row.record.as_deref()) else {
            walk.note(here, Problem::Unreadable("record"));
            continue;
        };
        let newest = latest.get(&(row.resource_type.to_owned(), id));
        let agrees = match newest {
            // Seeded before it had a history, and never written since.
            None => version == 0,
            Some((v, hash)) => *v == version && *hash == content_hash(record),
        };
        if !agrees {
            walk.note(here, Problem::CurrentMismatch);
        }
    }
    Ok(())
}
