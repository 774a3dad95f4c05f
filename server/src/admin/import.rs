//! Bringing a clinic's patients in from its old system: FHIR R4 Bulk Data NDJSON
//! (`Patient*.ndjson` in a directory). Each patient becomes a record with its first version
//! and `create` event, exactly as if registered; importing the same export again changes
//! nothing (each keeps its source id). What could not be taken is reported by resource id
//! (or file and line) and reason, never by value.

use std::path::Path;

use clinicdesk_protocol::audit::RequestSeen;
use clinicdesk_protocol::wire::{ImportJob, ImportSkip, ImportStatus, PatientFields, UserInfo};
use uuid::Uuid;

use crate::clinical::fhir_patient::{self, Skip};
use crate::clinical::records::{self, Created, Writer};
use crate::error::ServerError;
use crate::scope::{ClinicScope, Console};
use crate::state::AppState;
use crate::store::import_jobs as jobs;

/// One source record that was not taken, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Skipped {
    /// `Patient/<id>`, or `<file>:<line>` when the line names no resource.
    pub resource: String,
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    let actor = console.actor(scope.clinic_id());
    let by = Writer {
        user: &actor,
        device_id: None,
        seen: console.seen("import"),
        change_id: None,
    };
    let total = u64::try_from(lines.len()).unwrap_or(u64::MAX);
    let mut run = Run {
        lines,
        next: 0,
        report,
    };
    while run.step(state, &by, scope).await? {
        progress(run.done(), total);
    }
    Ok(run.report)
}

/// An import under way: its source lines, how far it is, what it has done.
struct Run {
    /// (where the line is, for a report that names no resource; the line).
    lines: Vec<(String, String)>,
    next: usize,
    report: ImportReport,
}

impl Run {
    fn done(&self) -> u64 {
        u64::try_from(self.next).unwrap_or(u64::MAX)
    }

    /// Imports the next batch, as `by`; answers whether there was one.
    async fn step(
        &mut self,
        state: &AppState,
        by: &Writer<'_>,
        scope: &ClinicScope,
    ) -> Result<bool, ImportError> {
        if self.next >= self.lines.len() {
            return Ok(false);
        }
        let batch = &self.lines[self.next..(self.next + BATCH).min(self.lines.len())];
        let report = &mut self.report;
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
        let answers = records::import_batch(state, by, scope, items)
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
                Err(ServerError::BadRequest { field }) => report.skipped.push(Skipped {
                    resource,
                    reason: format!("invalid {field}"),
                }),
                Err(ServerError::Conflict { field }) => report.skipped.push(Skipped {
                    resource,
                    reason: format!("{field} already in use"),
                }),
                Err(e) => return Err(ImportError::Server(e)),
            }
        }
        self.next += batch.len();
        Ok(true)
    }
}

/// Starts importing the `Patient` lines of `ndjson` (a FHIR Bulk Data file an admin
/// uploaded) into the scope's clinic, as `admin`: the job is stored, answered at once, and
/// runs on (its progress stored after each batch, so any instance answers for it).
pub async fn start(
    state: &AppState,
    scope: &ClinicScope,
    admin: &UserInfo,
    seen: RequestSeen,
    ndjson: &str,
) -> Result<ImportJob, ServerError> {
    let lines: Vec<(String, String)> = ndjson
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| (format!("line {}", n + 1), l.to_owned()))
        .collect();
    let id = Uuid::now_v7();
    let now = state.clock.now_ms();
    let total = i64::try_from(lines.len()).map_err(|_| ServerError::PayloadTooLarge)?;
    let mut tx = state.store.clinic_tx(scope).await?;
    jobs::insert(
        &mut tx,
        id,
        admin.user_id,
        total,
        &report_text(&ImportReport::default())?,
        now,
    )
    .await?;
    tx.commit().await?;
    let started = job_of(id, &stored_job(state, scope, id).await?, now)?;
    let (state, scope, admin) = (state.clone(), scope.clone(), admin.clone());
    tokio::spawn(async move {
        let by = Writer {
            user: &admin,
            device_id: seen.session_device_id,
            seen: seen.clone(),
            change_id: None,
        };
        let mut run = Run {
            lines,
            next: 0,
            report: ImportReport::default(),
        };
        let outcome = loop {
            match run.step(&state, &by, &scope).await {
                Ok(true) => {
                    if let Err(e) = record(&state, &scope, id, "running", &run, false).await {
                        break Err(e);
                    }
                }
                Ok(false) => break Ok(()),
                Err(ImportError::Server(e)) => break Err(e),
                Err(ImportError::Read(_)) => break Err(ServerError::Internal("import read")),
            }
        };
        let status = if outcome.is_ok() { "done" } else { "failed" };
        if let Err(e) = &outcome {
            tracing::error!(import_id = %id, error = %e, "an import job failed");
        }
        if let Err(e) = record(&state, &scope, id, status, &run, true).await {
            tracing::error!(import_id = %id, error = %e, "an import job's end was not stored");
        }
    });
    Ok(started)
}

/// Stores how far `run` is (and, when `finished`, that it has ended).
async fn record(
    state: &AppState,
    scope: &ClinicScope,
    id: Uuid,
    status: &str,
    run: &Run,
    finished: bool,
) -> Result<(), ServerError> {
    let done = i64::try_from(run.next).unwrap_or(i64::MAX);
    let report = report_text(&run.report)?;
    let now = state.clock.now_ms();
    let mut tx = state.store.clinic_tx(scope).await?;
    jobs::progress(&mut tx, id, status, done, &report, now, finished).await?;
    tx.commit().await?;
    Ok(())
}

fn report_text(report: &ImportReport) -> Result<String, ServerError> {
    serde_json::to_string(report).map_err(|_| ServerError::Internal("import report"))
}

async fn stored_job(
    state: &AppState,
    scope: &ClinicScope,
    id: Uuid,
) -> Result<jobs::JobRow, ServerError> {
    let mut tx = state.store.clinic_tx(scope).await?;
    let row = jobs::get(&mut tx, id).await?.ok_or(ServerError::NotFound)?;
    tx.commit().await?;
    Ok(row)
}

/// The job `id` of the scope's clinic, as far as it is.
pub async fn job(
    state: &AppState,
    scope: &ClinicScope,
    id: Uuid,
) -> Result<ImportJob, ServerError> {
    job_of(
        id,
        &stored_job(state, scope, id).await?,
        state.clock.now_ms(),
    )
}

/// A running job that stored no progress for this long lost the instance that ran it (a
/// batch takes well under a second).
const STALLED_AFTER_MS: i64 = 5 * 60_000;

fn job_of(id: Uuid, row: &jobs::JobRow, now_ms: i64) -> Result<ImportJob, ServerError> {
    let report: ImportReport = serde_json::from_str(&row.report)
        .map_err(|_| ServerError::Internal("stored import report malformed"))?;
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(ImportJob {
        id,
        status: match row.status.as_str() {
            "running" if now_ms - row.updated_at_ms > STALLED_AFTER_MS => ImportStatus::Stalled,
            "running" => ImportStatus::Running,
            "done" => ImportStatus::Done,
            _ => ImportStatus::Failed,
        },
        total: count(row.total),
        done: count(row.done),
        imported: report.imported,
        unchanged: report.unchanged,
        skipped: report
            .skipped
            .into_iter()
            .map(|s| ImportSkip {
                resource: s.resource,
                reason: s.reason,
            })
            .collect(),
        started_at: crate::time::rfc3339(row.started_at_ms)?,
        finished_at: row.finished_at_ms.map(crate::time::rfc3339).transpose()?,
    })
}

/// Source records per transaction: big enough that a commit, the chain's tip and the pages
/// of the clinic's indexes are paid once for many records (200 imported 3,990 a second, 500
/// 5,320, in release), small enough that registrations wait little for the clinic's lock
/// (a batch of 500 holds it about 0.1 s).
pub const BATCH: usize = 500;

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
