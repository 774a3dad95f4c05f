//! Bringing a clinic in from its old system: FHIR R4 Bulk Data NDJSON (`Patient`,
//! `Practitioner`, `Coverage` and `Appointment` files in a directory, or their lines in one
//! upload), in that order, since each refers to those before it. Each patient, coverage and
//! appointment becomes a record with its first version and `create` event, exactly as if
//! written through the API; each practitioner becomes an entry of the clinic's directory
//! (`super::directory`), and their appointments come in once an admin has linked the entry
//! to the clinician's account (a later run imports what an earlier one could not).
//! Importing the same export again changes nothing (each keeps its source id). What could
//! not be taken is reported by resource id (or file and line) and reason, never by value.

use std::path::Path;

use clinicdesk_protocol::audit::RequestSeen;
use clinicdesk_protocol::fhir_records::{self, PractitionerRef};
use clinicdesk_protocol::wire::{
    ImportJob, ImportSkip, ImportStatus, ImportTally, PatientFields, UserInfo,
};
use uuid::Uuid;

use super::directory;
use crate::clinical::fhir_patient::{self, Skip};
use crate::clinical::records::{self, Created, Writer};
use crate::clinical::{booking, coverage};
use crate::error::ServerError;
use crate::scope::{ClinicScope, Console};
use crate::state::AppState;
use crate::store::import_jobs as jobs;
use crate::store::{ClinicTx, clinics};

/// The resources imported, in the order they are: each refers only to those before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Patient,
    Practitioner,
    Coverage,
    Appointment,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::Patient,
        Kind::Practitioner,
        Kind::Coverage,
        Kind::Appointment,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Kind::Patient => "Patient",
            Kind::Practitioner => "Practitioner",
            Kind::Coverage => "Coverage",
            Kind::Appointment => "Appointment",
        }
    }

    fn of(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// One source line: its resource type (by its file, or by its own `resourceType` in an
/// upload), where it is (for a report that names no resource), and its text.
struct Line {
    kind: Kind,
    place: String,
    text: String,
}

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
    /// Records and directory entries, of every type.
    pub imported: u64,
    /// Already imported by an earlier run: left as they are.
    pub unchanged: u64,
    /// The two counts by resource type, in the order imported.
    #[serde(default)]
    pub by_resource: Vec<Tally>,
    pub skipped: Vec<Skipped>,
    /// Resource files of kinds this server does not import yet, with their line counts.
    pub not_imported: Vec<(String, u64)>,
    /// The records imported or found, in the order of the source.
    #[serde(skip)]
    pub patients: Vec<Uuid>,
}

/// What an import did with one resource type.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tally {
    pub resource: String,
    pub imported: u64,
    pub unchanged: u64,
}

impl ImportReport {
    /// The tally of `kind`'s records (`0, 0` if none came).
    pub fn of(&self, resource: &str) -> (u64, u64) {
        self.by_resource
            .iter()
            .find(|t| t.resource == resource)
            .map_or((0, 0), |t| (t.imported, t.unchanged))
    }

    fn count(&mut self, kind: Kind, created: Created) {
        let at = match self
            .by_resource
            .iter()
            .position(|t| t.resource == kind.as_str())
        {
            Some(at) => at,
            None => {
                self.by_resource.push(Tally {
                    resource: kind.as_str().to_owned(),
                    ..Tally::default()
                });
                self.by_resource.len() - 1
            }
        };
        let tally = &mut self.by_resource[at];
        match created {
            Created::New(_) => {
                self.imported += 1;
                tally.imported += 1;
            }
            Created::AlreadyImported(_) => {
                self.unchanged += 1;
                tally.unchanged += 1;
            }
        }
    }
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
    let mut lines: Vec<Line> = Vec::new();
    for (kind_name, path) in &files {
        let text = std::fs::read_to_string(path).map_err(ImportError::Read)?;
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let Some(kind) = Kind::of(kind_name) else {
            let count = text.lines().filter(|l| !l.trim().is_empty()).count();
            report
                .not_imported
                .push((kind_name.clone(), u64::try_from(count).unwrap_or(u64::MAX)));
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            if !line.trim().is_empty() {
                lines.push(Line {
                    kind,
                    place: format!("{file}:{}", n + 1),
                    text: line.to_owned(),
                });
            }
        }
    }
    lines.sort_by_key(|l| l.kind);
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
    /// In the order imported (by kind).
    lines: Vec<Line>,
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
        let kind = self.lines[self.next].kind;
        let end = self.lines[self.next..]
            .iter()
            .take(BATCH)
            .take_while(|l| l.kind == kind)
            .count();
        let batch = &self.lines[self.next..self.next + end];
        if kind == Kind::Patient {
            patient_batch(state, by, scope, batch, &mut self.report).await?;
        } else {
            other_batch(state, by, scope, batch, &mut self.report).await?;
        }
        self.next += batch.len();
        Ok(true)
    }
}

/// Why an item was refused, in a report's words (a field's name, never its value); `None`
/// for a failure of the server, which fails the batch.
fn refusal(kind: Kind, e: &ServerError) -> Option<String> {
    match e {
        ServerError::BadRequest { field } => Some(format!("invalid {field}")),
        ServerError::Conflict { field: "start" } if kind == Kind::Appointment => {
            Some("the practitioner is booked then".to_owned())
        }
        ServerError::Conflict { field } => Some(format!("{field} already in use")),
        _ => None,
    }
}

/// A batch of patients: parsed first; what parses goes in as one transaction.
async fn patient_batch(
    state: &AppState,
    by: &Writer<'_>,
    scope: &ClinicScope,
    batch: &[Line],
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let mut items = Vec::new();
    let mut named = Vec::new();
    for line in batch {
        match parse_line(&line.text) {
            Ok((resource, key, fields)) => {
                items.push((key, fields));
                named.push(resource.unwrap_or_else(|| line.place.clone()));
            }
            Err((resource, reason)) => report.skipped.push(Skipped {
                resource: resource.unwrap_or_else(|| line.place.clone()),
                reason,
            }),
        }
    }
    let answers = records::import_batch(state, by, scope, items)
        .await
        .map_err(ImportError::Server)?;
    for (answer, resource) in answers.into_iter().zip(named) {
        match answer {
            Ok(created) => {
                report.count(Kind::Patient, created);
                report.patients.push(created.id());
            }
            Err(e) => match refusal(Kind::Patient, &e) {
                Some(reason) => report.skipped.push(Skipped { resource, reason }),
                None => return Err(ImportError::Server(e)),
            },
        }
    }
    Ok(())
}

/// A batch of practitioners, coverages or appointments, in one transaction under the
/// clinic's lock: each resolved against what is already here, and written as a write
/// through the API would be.
async fn other_batch(
    state: &AppState,
    by: &Writer<'_>,
    scope: &ClinicScope,
    batch: &[Line],
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let server = ImportError::Server;
    let mut tx = state.store.clinic_tx(scope).await.map_err(server)?;
    clinics::lock_clinic(&mut tx, scope.clinic_id())
        .await
        .map_err(server)?;
    let mut by_npi = None;
    for line in batch {
        let (resource, outcome) = import_one(&mut tx, (state, scope, by), &mut by_npi, line).await;
        let resource = resource.unwrap_or_else(|| line.place.clone());
        match outcome {
            Ok(Ok(created)) => report.count(line.kind, created),
            Ok(Err(reason)) => report.skipped.push(Skipped { resource, reason }),
            Err(e) => match refusal(line.kind, &e) {
                Some(reason) => report.skipped.push(Skipped { resource, reason }),
                None => return Err(ImportError::Server(e)),
            },
        }
    }
    tx.commit()
        .await
        .map_err(ServerError::from)
        .map_err(server)?;
    Ok(())
}

/// What became of one line: the resource it names (if it names a usable id), and either a
/// record (or a reason it was not taken, before any write) or the write's refusal.
type Outcome = Result<Result<Created, String>, ServerError>;

/// The directory by NPI ([`directory::links_by_npi`]), read once per batch when a line
/// names its practitioner by NPI.
type ByNpi = Option<std::collections::HashMap<String, Result<Option<Uuid>, ()>>>;

async fn import_one(
    tx: &mut ClinicTx,
    (state, scope, by): (&AppState, &ClinicScope, &Writer<'_>),
    by_npi: &mut ByNpi,
    line: &Line,
) -> (Option<String>, Outcome) {
    let kind = line.kind;
    let Ok(resource) = serde_json::from_str::<serde_json::Value>(&line.text) else {
        return (None, Ok(Err("not a JSON resource".to_owned())));
    };
    let named = usable_id(&resource).map(|id| format!("{}/{id}", kind.as_str()));
    if resource["resourceType"] != kind.as_str() {
        return (named, Ok(Err(format!("not a {} resource", kind.as_str()))));
    }
    let skip = |s: fhir_records::Skip| Ok(Err(s.as_str().to_owned()));
    let outcome = match kind {
        Kind::Patient => Err(ServerError::Internal("patients go in batches")),
        Kind::Practitioner => match fhir_records::practitioner_from_fhir(&resource) {
            Err(s) => skip(s),
            Ok(p) => directory::import_in(tx, state, scope, by, &p).await.map(Ok),
        },
        Kind::Coverage => match fhir_records::coverage_from_fhir(&resource) {
            Err(s) => skip(s),
            Ok(c) => match patient_of(tx, &c.patient).await {
                Err(e) => Err(e),
                Ok(None) => Ok(Err("patient not imported".to_owned())),
                Ok(Some(patient)) => {
                    coverage::import_in(tx, state, scope, by, &c.id, patient, c.fields)
                        .await
                        .map(Ok)
                }
            },
        },
        Kind::Appointment => match fhir_records::appointment_from_fhir(&resource) {
            Err(s) => skip(s),
            Ok(a) => import_appointment(tx, (state, scope, by), by_npi, a).await,
        },
    };
    (named, outcome)
}

async fn import_appointment(
    tx: &mut ClinicTx,
    (state, scope, by): (&AppState, &ClinicScope, &Writer<'_>),
    by_npi: &mut ByNpi,
    a: fhir_records::SourceAppointment,
) -> Outcome {
    let Some(patient) = patient_of(tx, &a.patient).await? else {
        return Ok(Err("patient not imported".to_owned()));
    };
    let link = match &a.practitioner {
        PractitionerRef::Id(id) => {
            let key = directory::source_key(id);
            crate::store::directory::link_of(tx, &key).await?
        }
        PractitionerRef::Npi(npi) => {
            if by_npi.is_none() {
                *by_npi = Some(directory::links_by_npi(tx).await?);
            }
            match by_npi.as_ref().and_then(|m| m.get(npi)) {
                None => None,
                Some(Ok(user)) => Some(*user),
                Some(Err(())) => {
                    return Ok(Err(
                        "practitioner's NPI is on more than one entry".to_owned()
                    ));
                }
            }
        }
    };
    let practitioner = match link {
        None => return Ok(Err("practitioner not imported".to_owned())),
        Some(None) => return Ok(Err("practitioner not linked to an account".to_owned())),
        Some(Some(user)) => user,
    };
    let mut fields = a.fields;
    fields.patient_id = Some(patient);
    fields.practitioner_id = Some(practitioner);
    if fields.duration_mins.is_none() {
        let instant = |s: &str| s.parse::<jiff::Timestamp>().ok();
        let mins = fields
            .start
            .as_deref()
            .and_then(instant)
            .zip(instant(&a.end))
            .map(|(from, to)| to.duration_since(from).as_mins());
        let Some(mins) = mins else {
            return Ok(Err("invalid end".to_owned()));
        };
        fields.duration_mins = Some(u32::try_from(mins).unwrap_or(0));
    }
    booking::import_in(tx, state, scope, by, &a.id, fields)
        .await
        .map(Ok)
}

/// The clinic's patient imported from the source's `Patient/<source_id>` (the key
/// `fhir_patient::from_fhir` gives).
async fn patient_of(tx: &mut ClinicTx, source_id: &str) -> Result<Option<Uuid>, ServerError> {
    let key = format!("Patient/{source_id}");
    let found = crate::store::records::imported_of(tx, &[&key]).await?;
    Ok(found.get(&key).copied())
}

/// A resource's id, if it is one a report may show (ids are the source's keys, not
/// values, but only a plain one is echoed).
fn usable_id(resource: &serde_json::Value) -> Option<&str> {
    resource["id"].as_str().filter(|id| {
        id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c))
    })
}

/// Starts importing the lines of `ndjson` (FHIR Bulk Data lines an admin uploaded, of any
/// of the types imported) into the scope's clinic, as `admin`: the job is stored, answered at once, and
/// runs on (its progress stored after each batch, so any instance answers for it).
pub async fn start(
    state: &AppState,
    scope: &ClinicScope,
    admin: &UserInfo,
    seen: RequestSeen,
    ndjson: &str,
) -> Result<ImportJob, ServerError> {
    let mut lines: Vec<Line> = ndjson
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| Line {
            kind: kind_of_line(l),
            place: format!("line {}", n + 1),
            text: l.to_owned(),
        })
        .collect();
    lines.sort_by_key(|l| l.kind);
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

/// An uploaded line's kind, by its own `resourceType`; a line of no kind imported goes
/// with the patients, whose parser reports it.
fn kind_of_line(line: &str) -> Kind {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v["resourceType"].as_str().and_then(Kind::of))
        .unwrap_or(Kind::Patient)
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
        by_resource: report
            .by_resource
            .into_iter()
            .map(|t| ImportTally {
                resource: t.resource,
                imported: t.imported,
                unchanged: t.unchanged,
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
    let named = usable_id(&resource).map(|id| format!("Patient/{id}"));
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
