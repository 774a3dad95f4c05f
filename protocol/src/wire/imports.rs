//! `/v1/imports`: a clinic's admin brings its patients in from the old system (the `Patient`
//! lines of a FHIR R4 Bulk Data export, NDJSON), and follows the job. The answers name source
//! resources by id and say why one was not taken; they carry no value of any record.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where an import job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ImportStatus {
    Running,
    Done,
    /// Stopped by a failure of the server or its database: what was imported before it
    /// stays, and posting the same lines again imports the rest.
    Failed,
    /// Running, but no progress for five minutes: the server instance that ran it stopped.
    /// Post the same lines again to import the rest.
    Stalled,
}

/// A source line that was not imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportSkip {
    /// `Patient/<source id>`, or `line <n>` when the line names none.
    pub resource: String,
    pub reason: String,
}

/// An import job: `POST /v1/imports` answers it (202) as it starts, `GET
/// /v1/imports/{import_id}` as it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportJob {
    pub id: Uuid,
    pub status: ImportStatus,
    /// Lines in the upload.
    pub total: u64,
    /// Lines handled so far.
    pub done: u64,
    pub imported: u64,
    /// Imported by an earlier upload (the same source id): left as they are.
    pub unchanged: u64,
    pub skipped: Vec<ImportSkip>,
    /// RFC 3339.
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}
