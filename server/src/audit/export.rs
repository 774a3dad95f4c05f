//! `audit export` and `GET /v1/audit/export`: the clinic's events matching filters, newest
//! first, as CSV, as FHIR R4 AuditEvents in a Bundle, or as the verifiable JSON Lines bundle
//! (see `clinicdesk_protocol::export`) that `audit verify-export` checks offline.
//!
//! Every export first signs (or reuses) a checkpoint and holds only events inside it, so
//! events arriving meanwhile wait for the next export. Output is produced in chunks on a
//! channel: the CLI writes them to stdout, the API streams them as the response body.

use clinicdesk_protocol::audit::{AuditEvent, Recorder};
use clinicdesk_protocol::export::{
    ChainKey, ClinicKeys, EXPORT_FORMAT, EventDigest, ExportEnd, ExportFilters, ExportHeader,
    ExportLine, ExportedEvent,
};
use clinicdesk_protocol::merkle::SignedCheckpoint;
use clinicdesk_protocol::wire::AuditRecord;
use tokio::sync::mpsc;

use super::query::{self, AuditQuery};
use super::{fhir, log};
use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::state::AppState;

/// Events fetched per page while exporting.
const PAGE: u32 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Csv,
    Jsonl,
    Fhir,
}

impl std::str::FromStr for Format {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "csv" => Ok(Format::Csv),
            "jsonl" => Ok(Format::Jsonl),
            "fhir" => Ok(Format::Fhir),
            _ => Err("expected csv, jsonl or fhir"),
        }
    }
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Jsonl => "application/jsonl",
            Format::Fhir => "application/fhir+json",
        }
    }
}

/// The chunks of an export; the receiver went away if sending fails.
pub type Chunks = mpsc::Sender<Vec<u8>>;

async fn send(out: &Chunks, chunk: Vec<u8>) -> Result<(), ServerError> {
    out.send(chunk)
        .await
        .map_err(|_| ServerError::Internal("export reader went away"))
}

/// The clinic's chain keys as stored, and the server's.
pub async fn clinic_keys(state: &AppState, scope: &ClinicScope) -> Result<ClinicKeys, ServerError> {
    let rows = state.store.chain_keys(scope).await?;
    let server = state.audit_key.public_hex();
    let mut chains = std::collections::BTreeMap::new();
    for row in rows {
        let key = if row.server_chain {
            ChainKey {
                recorded_by: Recorder::Server,
                public_key: server.clone(),
            }
        } else {
            ChainKey {
                recorded_by: Recorder::Device,
                public_key: row.public_key,
            }
        };
        chains.insert(row.device_id, key);
    }
    Ok(ClinicKeys {
        clinic_id: scope.clinic_id(),
        server,
        chains,
        rotations: state.audit_key.rotations().to_vec(),
    })
}

/// Signs a checkpoint of the clinic's log as it stands (or returns the one of that size).
pub async fn fresh_checkpoint(
    state: &AppState,
    scope: &ClinicScope,
) -> Result<SignedCheckpoint, ServerError> {
    log::checkpoint_now(
        &state.store,
        &state.audit_key,
        scope.clinic_id(),
        state.clock.now_ms(),
    )
    .await
}

/// The events matching filters inside a checkpoint, newest first, a page at a time.
pub struct Records<'a> {
    state: &'a AppState,
    scope: &'a ClinicScope,
    query: AuditQuery,
    tree_size: u64,
    done: bool,
}

impl<'a> Records<'a> {
    pub fn new(
        state: &'a AppState,
        scope: &'a ClinicScope,
        filters: &ExportFilters,
        checkpoint: &SignedCheckpoint,
    ) -> Self {
        Self {
            state,
            scope,
            query: AuditQuery::first_page(filters, PAGE),
            tree_size: checkpoint.checkpoint.tree_size,
            done: false,
        }
    }

    /// The next page, `None` after the last.
    pub async fn next_page(&mut self) -> Result<Option<Vec<AuditRecord>>, ServerError> {
        if self.done {
            return Ok(None);
        }
        let page = query::search(&self.state.store, self.scope, &self.query).await?;
        match page.next_cursor {
            Some(c) => self.query.cursor = Some(c),
            None => self.done = true,
        }
        Ok(Some(
            page.events
                .into_iter()
                .filter(|r| r.leaf_index < self.tree_size)
                .collect(),
        ))
    }
}

/// Writes the export to `out`; returns how many events it holds.
pub async fn export(
    state: &AppState,
    scope: &ClinicScope,
    filters: &ExportFilters,
    format: Format,
    out: &Chunks,
) -> Result<u64, ServerError> {
    let checkpoint = fresh_checkpoint(state, scope).await?;
    let mut records = Records::new(state, scope, filters, &checkpoint);
    let mut n = 0u64;
    match format {
        Format::Jsonl => return jsonl(state, scope, filters, checkpoint, out).await,
        Format::Csv => {
            send(out, csv_row(&CSV_COLUMNS)?).await?;
            while let Some(page) = records.next_page().await? {
                for r in page {
                    send(out, csv_row(&csv_fields(&r))?).await?;
                    n += 1;
                }
            }
        }
        Format::Fhir => {
            send(out, fhir::bundle_start(state.clock.now_ms())?.into_bytes()).await?;
            while let Some(page) = records.next_page().await? {
                for r in page {
                    let sep = if n == 0 { "" } else { "," };
                    let entry = fhir::entry(&r.event, &r.event.hash().to_hex())?;
                    send(out, format!("{sep}{entry}").into_bytes()).await?;
                    n += 1;
                }
            }
            send(out, fhir::bundle_end().into_bytes()).await?;
        }
    }
    Ok(n)
}

fn line(l: &ExportLine) -> Result<Vec<u8>, ServerError> {
    let mut bytes = serde_json::to_vec(l).map_err(|_| ServerError::Internal("export json"))?;
    bytes.push(b'\n');
    Ok(bytes)
}

async fn jsonl(
    state: &AppState,
    scope: &ClinicScope,
    filters: &ExportFilters,
    checkpoint: SignedCheckpoint,
    out: &Chunks,
) -> Result<u64, ServerError> {
    let clinic = scope.clinic_id();
    let tree_size = checkpoint.checkpoint.tree_size;
    let header = line(&ExportLine::Header(ExportHeader {
        format: EXPORT_FORMAT.to_owned(),
        clinic_id: clinic,
        exported_at_ms: state.clock.now_ms(),
        filters: filters.clone(),
        checkpoint: checkpoint.clone(),
        keys: clinic_keys(state, scope).await?,
    }))?;
    let header_line = header[..header.len() - 1].to_vec();
    send(out, header).await?;
    let mut digest = EventDigest::default();
    let mut n = 0u64;
    let mut records = Records::new(state, scope, filters, &checkpoint);
    while let Some(page) = records.next_page().await? {
        // A page's proofs are read in one transaction, ended before its lines are sent: a
        // slow reader must not hold a snapshot of the log open.
        let mut proofs = state.store.clinic_tx(scope).await?;
        let mut lines = Vec::with_capacity(page.len());
        for r in page {
            let proof = log::inclusion(&mut proofs, clinic, r.leaf_index, tree_size).await?;
            digest.push(&r.event.hash());
            lines.push(line(&ExportLine::Event(ExportedEvent {
                event: r.event,
                signature: r.signature,
                leaf_index: r.leaf_index,
                inclusion: proof.hashes,
            }))?);
        }
        proofs.commit().await?;
        for l in lines {
            send(out, l).await?;
            n += 1;
        }
    }
    let digest = digest.finish();
    let signature = state
        .audit_key
        .sign_hex(&ExportEnd::signed_bytes(&header_line, n, &digest));
    send(
        out,
        line(&ExportLine::End(ExportEnd {
            events: n,
            digest,
            signature,
        }))?,
    )
    .await?;
    Ok(n)
}

/// The CSV columns, in order.
pub const CSV_COLUMNS: [&str; 24] = [
    "event_id",
    "occurred_at",
    "clinic_id",
    "actor_user_id",
    "actor_role",
    "recorded_by",
    "device_id",
    "device_seq",
    "action",
    "resource_type",
    "resource_id",
    "patient_id",
    "fields",
    "outcome",
    "offline",
    "route",
    "break_glass_reason_code",
    "break_glass_reason_text",
    "client_ip",
    "user_agent",
    "session_device_id",
    "hash",
    "signature",
    "leaf_index",
];

fn csv_fields(r: &AuditRecord) -> [String; 24] {
    let e: &AuditEvent = &r.event;
    let opt = |u: Option<uuid::Uuid>| u.map(|u| u.to_string()).unwrap_or_default();
    [
        e.id.to_string(),
        fhir::instant(e.occurred_at_ms).unwrap_or_default(),
        e.clinic_id.to_string(),
        e.actor_user_id.to_string(),
        e.actor_role.as_str().to_owned(),
        e.recorded_by.as_str().to_owned(),
        e.device_id.to_string(),
        e.device_seq.to_string(),
        e.action.as_str().to_owned(),
        e.resource_type.clone(),
        e.resource_id.clone(),
        opt(e.patient_id),
        e.fields.join(";"),
        e.outcome.as_str().to_owned(),
        e.offline.to_string(),
        e.route.clone(),
        e.break_glass
            .as_ref()
            .map(|b| b.reason_code.clone())
            .unwrap_or_default(),
        e.break_glass
            .as_ref()
            .map(|b| b.reason_text.clone())
            .unwrap_or_default(),
        e.request
            .as_ref()
            .map(|q| q.client_ip.clone())
            .unwrap_or_default(),
        e.request
            .as_ref()
            .map(|q| q.user_agent.clone())
            .unwrap_or_default(),
        opt(e.request.as_ref().and_then(|q| q.session_device_id)),
        e.hash().to_hex(),
        r.signature.clone(),
        r.leaf_index.to_string(),
    ]
}

/// A spreadsheet would run a cell starting with one of these as a formula; such cells
/// (free text: reasons, user agents) get a leading apostrophe (OWASP CSV injection).
fn defuse(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

pub(crate) fn csv_row<S: AsRef<str>>(cells: &[S]) -> Result<Vec<u8>, ServerError> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    w.write_record(cells.iter().map(|c| defuse(c.as_ref()).into_owned()))
        .map_err(|_| ServerError::Internal("csv"))?;
    w.into_inner().map_err(|_| ServerError::Internal("csv"))
}
