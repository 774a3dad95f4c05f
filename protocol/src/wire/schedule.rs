//! `/v1/appointments`: the day's appointments.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::phi::Phi;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Appointment {
    pub id: Uuid,
    pub patient_id: Uuid,
    /// RFC 3339, UTC.
    pub starts_at: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub patient_name: Phi<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub reason: Phi<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppointmentList {
    /// The day listed, `YYYY-MM-DD` (UTC).
    pub date: String,
    pub appointments: Vec<Appointment>,
}
