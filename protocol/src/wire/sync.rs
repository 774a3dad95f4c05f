//! `/v1/sync/patients`: the patients of a window of the clinic's days, a page at a time,
//! each as the caller may read them, for the copy a workstation keeps offline.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::wire::patients::Patient;
use crate::wire::records::{CoverageRecord, PatientRecord};

/// Most patients one page holds (and what a request without `limit` gets).
pub const SYNC_PAGE_MAX: usize = 200;

/// Longest window one request may name, in days.
pub const SYNC_WINDOW_MAX_DAYS: i64 = 31;

/// `GET /v1/sync/patients?from=&to=&after=&limit=`: the patients booked from `from` to `to`
/// (the clinic's days, both included; a clinician's own appointments only), by id, after
/// the cursor `after`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncPage {
    pub patients: Vec<SyncedPatient>,
    /// The cursor of the next page (`after=`); absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Uuid>,
}

/// One patient as the offline copy keeps them: the chart (its clinical summary only for a
/// clinician of the care team: a break-glass grant does not reach an offline copy), the
/// registration record and the coverages, each absent when the role reads none of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncedPatient {
    pub chart: Patient,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<PatientRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverages: Option<Vec<CoverageRecord>>,
}

impl SyncedPatient {
    /// The names of the fields it discloses, as the server's event and the app's view name
    /// them: the chart's, then the record's not named yet, then each coverage field as
    /// `Coverage.<name>`, each once.
    pub fn disclosed_fields(&self) -> Vec<String> {
        let mut fields = self.chart.field_names();
        let mut note = |name: String| {
            if !fields.contains(&name) {
                fields.push(name);
            }
        };
        if let Some(r) = &self.record {
            for name in r.fields.present() {
                note(name.to_owned());
            }
        }
        for c in self.coverages.iter().flatten() {
            for name in c.fields.present() {
                note(format!("Coverage.{name}"));
            }
        }
        fields
    }
}
