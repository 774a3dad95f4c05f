//! `/v1/imports`: a clinic's admin brings its records in from the old system (the `Patient`,
//! `Practitioner`, `Coverage` and `Appointment` lines of a FHIR R4 Bulk Data export,
//! NDJSON), and follows the job. The answers name source resources by id and say why one
//! was not taken; they carry no value of any record. `/v1/practitioner-directory`: the old
//! system's practitioners the import found, each linked by an admin to the clinician's own
//! account, so that their appointments can come in.

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
    /// `Patient/<source id>` (or `Coverage/...`, ...), or `line <n>` when the line names
    /// none.
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
    /// `imported` and `unchanged` by resource type, in the order imported (patients first);
    /// types with neither are left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_resource: Vec<ImportTally>,
    /// RFC 3339.
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// What an import did with one resource type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportTally {
    /// `Patient`, `Practitioner`, `Coverage` or `Appointment`.
    pub resource: String,
    pub imported: u64,
    pub unchanged: u64,
}

/// A practitioner of the system the clinic moved from, as its import found them. Not an
/// account: an admin links it to the clinician's own (`user_id`), after which the entry's
/// appointments import onto that clinician's schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DirectoryEntry {
    pub id: Uuid,
    /// For the `If-Match` of a link.
    pub version: u64,
    /// `Practitioner/<source id>`.
    pub source: String,
    pub name: String,
    /// The National Provider Identifier, empty when the source gave none.
    pub npi: String,
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
}

/// `GET /v1/practitioner-directory`: the clinic's entries, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PractitionerDirectory {
    pub entries: Vec<DirectoryEntry>,
}

/// `PUT /v1/practitioner-directory/{entry_id}` (with `If-Match`): the clinician's account
/// the entry stands for, or none to undo a wrong link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DirectoryLink {
    pub user_id: Option<Uuid>,
}
