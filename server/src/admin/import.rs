//! Bringing a clinic's patients in from its old system: FHIR R4 Bulk Data NDJSON
//! (`Patient*.ndjson` in a directory). Each patient becomes a record with its first version
//! and `create` event, exactly as if registered; importing the same export again changes
//! nothing (each keeps its source id). What could not be taken is reported by resource id
//! (or file and line) and reason, never by value.

use std::path::Path;

use clinicdesk_protocol::wire::PatientFields;
use uuid::Uuid;

use crate::clinical::fhir_patient::{self, Skip};
use crate::clinical::records::{self, Created};
use crate::error::ServerError;
use crate::scope::{ClinicScope, Console};
use crate::state::AppState;

/// One source record that was not taken, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// `Patient/<id>`, or `<file>:<line>` when the line names no resource.
    pub resource: String,
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    pub imported: u64,
    /// Already imported by an earlier run: left as they are.
    pub unchanged: u64,
    pub skipped: Vec<Skipped>,
    /// Resource files of kinds this server does not import yet, with their line counts.
    pub not_imported: Vec<(String, u64)>,
    /// The records imported or found, in the order of the source.
    #[serde(skip)]
    pub patients: Vec<Uuid>,
}

/// The NDJSON files of a Bulk Data export, by resource type: `Type.ndjson` or
/// `Type.000.ndjson`, in name order.
fn files(dir: &Path) -> std::io::Result<Vec<(String, std::path::PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(kind) = name
            .strip_suffix(".ndjson")
            .and_then(|n| n.split('.').next())
            && kind.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        {
            out.push((kind.to_owned(), path.clone()));
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// Imports the `Patient` resources of the export in `dir` into the scope's clinic, calling
/// `progress(done, total)` as it goes.
pub async fn import_ndjson(
    state: &AppState,
    console: &Console,
    scope: &ClinicScope,
    dir: &Path,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<ImportReport, ImportError> {
    let files = files(dir).map_err(ImportError::Read)?;
    let mut report = ImportReport::default();
    let mut lines: Vec<(String, String)> = Vec::new();
    for (kind, path) in &files {
        let text = std::fs::read_to_string(path).map_err(ImportError::Read)?;
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if kind != "Patient" {
            let count = text.lines().filter(|l| !l.trim().is_empty()).count();
            report
                .not_imported
                .push((kind.clone(), u64::try_from(count).unwrap_or(u64::MAX)));
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            if !line.trim().is_empty() {
                lines.push((format!("{file}:{}", n + 1), line.to_owned()));
            }
        }
    }
    let total = u64::try_from(lines.len()).unwrap_or(u64::MAX);
    let mut done = 0u64;
    for batch in lines.chunks(BATCH) {
        // Parsed first; what parses goes in as one transaction.
        let mut items = Vec::new();
        let mut named = Vec::new();
        for (place, line) in batch {
            match parse_line(line) {
                Ok((resource, key, fields)) => {
                    items.push((key, fields));
                    named.push(resource.unwrap_or_else(|| place.clone()));
                }
                Err((resource, reason)) => report.skipped.push(Skipped {
                    resource: resource.unwrap_or_else(|| place.clone()),
                    reason,
                }),
            }
        }
        let answers = records::import_batch(state, console, scope, items)
            .await
            .map_err(ImportError::Server)?;
        for (answer, resource) in answers.into_iter().zip(named) {
            match answer {
                Ok(Created::New(id)) => {
                    report.imported += 1;
                    report.patients.push(id);
                }
                Ok(Created::AlreadyImported(id)) => {
                    report.unchanged += 1;
                    report.patients.push(id);
                }
                Err(ServerError::BadRequest { field } | ServerError::Conflict { field }) => {
                    report.skipped.push(Skipped {
                        resource,
                        reason: format!("invalid {field}"),
                    })
                }
                Err(e) => return Err(ImportError::Server(e)),
            }
        }
        done += u64::try_from(batch.len()).unwrap_or(u64::MAX);
        progress(done, total);
    }
    Ok(report)
}

/// Source records per transaction: big enough that a commit and the chain's tip are paid
/// once for many records, small enough that registrations wait little for the clinic's lock.
const BATCH: usize = 200;

/// A source line taken: its resource (as `Patient/<id>`, when it names a usable id), its
/// source key and its fields.
type Parsed = (Option<String>, String, PatientFields);

/// A source line not taken: its resource, if named, and why (never a value).
type NotTaken = (Option<String>, String);

fn parse_line(line: &str) -> Result<Parsed, NotTaken> {
    let resource: serde_json::Value =
        serde_json::from_str(line).map_err(|_| (None, "not a JSON resource".to_owned()))?;
    let named = resource["id"]
        .as_str()
        .filter(|id| {
            id.len() <= 64
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c))
        })
        .map(|id| format!("Patient/{id}"));
    let (key, fields) = fhir_patient::from_fhir(&resource)
        .map_err(|skip: Skip| (named.clone(), skip.as_str().to_owned()))?;
    Ok((named, key, fields))
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("reading the export")]
    Read(#[source] std::io::Error),
    #[error("storing the records")]
    Server(#[source] ServerError),
}
