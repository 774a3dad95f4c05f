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
    /// Absent in copies cached before appointments had a status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AppointmentStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub practitioner_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_mins: Option<u32>,
    /// The appointment record's version, for the `If-Match` of a change made from the day's
    /// list (check in, cancel); absent in copies cached before it was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
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

/// An appointment's status, with FHIR R4's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AppointmentStatus {
    #[default]
    #[serde(rename = "booked")]
    Booked,
    /// The patient is here (in the waiting room).
    #[serde(rename = "arrived")]
    Arrived,
    /// Checked in: the visit (its encounter) has begun.
    #[serde(rename = "checked-in")]
    CheckedIn,
    #[serde(rename = "fulfilled")]
    Fulfilled,
    /// Needs a `cancellation_reason`.
    #[serde(rename = "cancelled")]
    Cancelled,
    #[serde(rename = "noshow")]
    NoShow,
    /// Booked by mistake: kept, but never counted.
    #[serde(rename = "entered-in-error")]
    EnteredInError,
}

impl AppointmentStatus {
    /// Whether the appointment still holds its practitioner's time.
    pub fn holds_time(self) -> bool {
        matches!(
            self,
            AppointmentStatus::Booked | AppointmentStatus::Arrived | AppointmentStatus::CheckedIn
        )
    }

    /// Whether a front desk may move an appointment from `self` to `to`.
    pub fn may_become(self, to: AppointmentStatus) -> bool {
        use AppointmentStatus::*;
        match (self, to) {
            (a, b) if a == b => true,
            (_, EnteredInError) => self != EnteredInError,
            (Booked, Arrived | CheckedIn | Cancelled | NoShow) => true,
            (Arrived, CheckedIn | Cancelled) => true,
            (CheckedIn, Fulfilled) => true,
            _ => false,
        }
    }
}

record_fields! {
    /// An appointment's fields (FHIR `Appointment`), cut like a patient's to what the reader
    /// may see.
    AppointmentFields {
    /// Set at booking; an appointment never moves to another patient.
    patient_id: Uuid,
    /// The clinician seen (a clinician user of the clinic).
    practitioner_id: Uuid,
    /// RFC 3339; answers carry the clinic's offset at that moment.
    start: String,
    /// 5 to 480.
    duration_mins: u32,
    /// FHIR's appointment types (v2 0276): `routine`, `walkin`, `checkup`, `followup`,
    /// `emergency`.
    appointment_type: String,
    /// Why the patient comes, in the front desk's words.
    reason: String,
    status: AppointmentStatus,
    /// Why it was cancelled (required with `cancelled`).
    cancellation_reason: String,
    }
}

/// An appointment as the caller may read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppointmentRecord {
    pub id: Uuid,
    pub version: u64,
    pub fields: AppointmentFields,
    /// The encounter its check-in opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encounter_id: Option<Uuid>,
}

/// `POST /v1/appointments`: book. `patient_id`, `practitioner_id`, `start` and
/// `duration_mins` are required; the status is `booked`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewAppointment {
    /// The appointment's id, when the workstation chose it (booked offline); the server's
    /// otherwise. An id already on file is a `conflict` on `id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    pub fields: AppointmentFields,
}

/// `PATCH /v1/appointments/{id}` with `If-Match`: reschedule, change, or move the status
/// (check in, cancel with a reason, mark a no-show, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AppointmentUpdate {
    pub fields: AppointmentFields,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub reason_for_change: Phi<String>,
}

/// `GET /v1/appointments/{id}/history`: every version, oldest first, as a patient record's
/// history is (who, when, what changed, why), with the appointment as it was.
pub type AppointmentHistory = crate::wire::RecordHistory<AppointmentFields>;

/// `GET /v1/practitioners`: who can be booked (the clinic's active clinicians). No PHI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PractitionerList {
    pub practitioners: Vec<crate::wire::StaffMember>,
}

/// A day of the week, as working hours name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// One stretch of a practitioner's week in the clinic's local time: from `start` to `end`
/// (`HH:MM`, 24-hour; `end` after `start`, `24:00` for midnight at the end of the day).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WorkingPeriod {
    pub weekday: Weekday,
    pub start: String,
    pub end: String,
}

/// `GET /v1/practitioners/{id}/working-hours`: when the practitioner can be booked. No PHI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkingHours {
    pub practitioner_id: Uuid,
    pub periods: Vec<WorkingPeriod>,
    /// True until someone sets them: Monday to Friday, 09:00 to 17:00.
    pub default: bool,
}

/// `PUT /v1/practitioners/{id}/working-hours`: the practitioner's whole week (at most 28
/// periods; on one day they may not overlap).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WorkingHoursChange {
    pub periods: Vec<WorkingPeriod>,
}

/// `GET /v1/practitioners/{id}/free-slots?date=&duration_mins=`: where an appointment of
/// `duration_mins` fits on `date` (in the clinic's time zone) within the practitioner's hours,
/// holding no one else's time and not already past. No PHI: it says when, never who.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FreeSlots {
    pub practitioner_id: Uuid,
    pub date: String,
    pub duration_mins: u32,
    /// Start times every 15 minutes, RFC 3339 with the clinic's offset at that instant.
    pub slots: Vec<String>,
}
