//! `/v1/appointments`: a day's appointments, in the clinic's time zone.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::phi::Phi;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Appointment {
    pub id: Uuid,
    pub patient_id: Uuid,
    /// RFC 3339 with the clinic's UTC offset at that moment, e.g. `2026-03-08T09:00:00-04:00`.
    pub starts_at: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub patient_name: Phi<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub reason: Phi<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppointmentList {
    /// The day listed, `YYYY-MM-DD`, in the clinic's time zone.
    pub date: String,
    /// The clinic's IANA time zone the day is in (UTC in copies cached before it existed).
    #[serde(default = "utc")]
    pub time_zone: String,
    pub appointments: Vec<Appointment>,
}

fn utc() -> String {
    "UTC".to_owned()
}
