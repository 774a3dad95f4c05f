//! A patient's registration record (`/v1/patients`, `/v1/patients/{id}/record`): the
//! fields as the caller's role may see them, the bodies that register and change a patient,
//! and the record's history of versions. Names and value sets follow FHIR R4's Patient.
//!
//! Every field is optional on the wire: absent when the caller's role may not read it (see
//! [`crate::policy::fields`]), and in a change, absent when it is not being changed.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::phi::Phi;
use crate::policy::Role;

/// A person's name: FHIR's `HumanName`, cut to what a clinic registers.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HumanName {
    pub given: String,
    pub family: String,
    /// What the patient likes to be called, if not their given name.
    #[serde(default)]
    pub preferred: String,
}

impl HumanName {
    /// "Given Family", as the schedule and the chart show it.
    pub fn display(&self) -> String {
        match (self.given.is_empty(), self.family.is_empty()) {
            (true, _) => self.family.clone(),
            (false, true) => self.given.clone(),
            (false, false) => format!("{} {}", self.given, self.family),
        }
    }
}

/// FHIR's administrative gender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Gender {
    Male,
    Female,
    Other,
    #[default]
    Unknown,
}

/// A postal address (FHIR `Address`, home use).
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct Address {
    pub line: Vec<String>,
    pub city: String,
    pub state: String,
    pub postal_code: String,
    pub country: String,
}

/// Whom to call in an emergency (FHIR `Patient.contact`).
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct EmergencyContact {
    pub name: String,
    pub relationship: String,
    pub phone: String,
}

/// An identifier another system gave the patient (FHIR `Identifier`), kept from an import:
/// the system that issued it, its value, and its kind (HL7 v2 table 0203, e.g. `MR`).
/// A US social security number is not one of these: it is the patient's `ssn`, encrypted
/// at rest. Other identifiers that would need encryption (driver's licence, passport) are
/// not kept.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct Identifier {
    pub system: String,
    pub value: String,
    pub kind: String,
}

/// PHI prints as its type's name only.
macro_rules! redacted_debug {
    ($($t:ty),*) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($t), "(redacted)"))
            }
        }
    )*};
}
redacted_debug!(HumanName, Address, EmergencyContact, Identifier);

record_fields! {
    /// A patient's registration and contact fields. Each is absent when the reader may not
    /// see it, or (in a change) when it is not changed; its `Debug` names the fields
    /// present, never a value.
    PatientFields {
    /// The clinic's medical record number, unique within the clinic; the server assigns one
    /// at registration when none is given.
    mrn: String,
    /// Identifiers from the system the patient was imported from (read-only).
    identifiers: Vec<Identifier>,
    /// The US social security number, `NNN-NN-NNNN` (empty: none on file). Sensitive: the
    /// server stores it encrypted, and finds a patient by it only through a keyed index.
    ssn: String,
    name: HumanName,
    /// `YYYY-MM-DD`.
    birth_date: String,
    gender: Gender,
    phone: String,
    email: String,
    address: Address,
    /// The language the patient prefers to be spoken to in (BCP 47, e.g. `en`, `es`).
    language: String,
    emergency_contact: EmergencyContact,
    /// False once the patient is no longer seen here; a record is never deleted.
    active: bool,
    }
}

impl PatientFields {
    /// Every field present: an absent one gets its empty value (`active` is true).
    pub fn filled(mut self) -> Self {
        if self.active.is_none() {
            self.active = Some(true);
        }
        self.with_defaults()
    }
}

/// A patient's record as the caller may read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PatientRecord {
    pub id: Uuid,
    /// 0 for a record seeded before it had a history; each change adds one. An update names
    /// the version it was based on in `If-Match`.
    pub version: u64,
    pub fields: PatientFields,
}

/// How the patient relates to a coverage's subscriber (FHIR's subscriber-relationship
/// codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SubscriberRelationship {
    /// The patient is the subscriber.
    #[default]
    #[serde(rename = "self")]
    Own,
    Spouse,
    Child,
    Parent,
    Other,
}

record_fields! {
    /// A patient's insurance coverage (FHIR `Coverage`), cut to what the reader may see.
    CoverageFields {
    /// The insurer, by name.
    payer: String,
    member_id: String,
    group: String,
    subscriber_relationship: SubscriberRelationship,
    /// `YYYY-MM-DD`, inclusive.
    period_start: String,
    /// `YYYY-MM-DD`, inclusive; empty while it runs.
    period_end: String,
    /// False once the coverage no longer applies; a coverage is never deleted.
    active: bool,
    }
}

impl CoverageFields {
    /// Every field present: an absent one gets its empty value (`active` is true).
    pub fn filled(mut self) -> Self {
        if self.active.is_none() {
            self.active = Some(true);
        }
        self.with_defaults()
    }
}

/// A coverage as the caller may read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CoverageRecord {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub version: u64,
    pub fields: CoverageFields,
}

/// `GET /v1/patients/{id}/coverages`: the patient's coverages, active or not, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CoverageList {
    pub patient_id: Uuid,
    pub coverages: Vec<CoverageRecord>,
}

/// `GET /v1/day/patients?date=`: the patients booked on a day (not cancelled or entered in
/// error), each with their coverages, as the caller may read them; no appointment detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DayPatients {
    /// The day listed, `YYYY-MM-DD`, in the clinic's time zone.
    pub date: String,
    pub time_zone: String,
    /// By name, each patient once.
    pub patients: Vec<DayPatient>,
}

/// One of a day's patients: their record and their coverages, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DayPatient {
    pub record: PatientRecord,
    pub coverages: Vec<CoverageRecord>,
}

impl DayPatient {
    /// The names of the fields it discloses, as the server's event and the app's view name
    /// them: the patient's own, then each coverage field as `Coverage.<name>`, once.
    pub fn disclosed_fields(&self) -> Vec<String> {
        let mut fields: Vec<String> = self
            .record
            .fields
            .present()
            .into_iter()
            .map(str::to_owned)
            .collect();
        for c in &self.coverages {
            for name in c.fields.present() {
                let named = format!("Coverage.{name}");
                if !fields.contains(&named) {
                    fields.push(named);
                }
            }
        }
        fields
    }
}

/// `POST /v1/patients/{id}/coverages` (`payer` and `member_id` required), and
/// `PATCH /v1/coverages/{id}` with `If-Match` (the fields to change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CoverageChange {
    pub fields: CoverageFields,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub reason: Phi<String>,
}

/// `GET /v1/coverages/{id}/history`.
pub type CoverageHistory = RecordHistory<CoverageFields>;

/// `GET /v1/patients?q=`: one page of an as-you-type search, each match cut to what a
/// search shows (record number, name, birth date, phone, active) and the reader may see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PatientSearchPage {
    pub results: Vec<PatientRecord>,
    /// The `offset` of the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<u32>,
}

/// The most matches one page of a search holds.
pub const SEARCH_PAGE_MAX: u32 = 50;

/// `POST /v1/patients`: register a new patient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PatientRegistration {
    /// The new patient's id, when the workstation chose it (a registration made offline, so
    /// that a booking queued after it can name the patient); the server's otherwise. An id
    /// already on file is a `conflict` on `id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// `name` (given and family) and `birth_date` are required.
    pub fields: PatientFields,
    /// Set after a `possible_duplicate` answer when the user checked the candidates and
    /// this is a different person.
    #[serde(default)]
    pub confirm_new_person: bool,
}

/// `PATCH /v1/patients/{id}` with `If-Match: "<version>"`: the fields to change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PatientUpdate {
    pub fields: PatientFields,
    /// Why, in the user's words (kept in the history; optional).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub reason: Phi<String>,
}

/// What a registration or change stored: the record and its new version (also its `ETag`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordWritten {
    pub id: Uuid,
    pub version: u64,
}

/// One version of a record: who stored it, when, what it changed, and the record (`F`, its
/// field type) as it was then, all cut to what the reader may see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordVersion<F> {
    pub version: u64,
    /// UTC, milliseconds since the Unix epoch.
    pub recorded_at_ms: i64,
    pub actor_user_id: Uuid,
    pub actor_role: Role,
    /// The workstation the change came from.
    pub device_id: Option<Uuid>,
    /// The names of the fields this version changed (all of them for the first).
    pub changed: Vec<String>,
    /// Why, in the writer's words (empty when not given).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub reason: Phi<String>,
    pub fields: F,
}

/// `GET .../history` of a record (a patient, a coverage, an appointment): every version,
/// oldest first, and whose record it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordHistory<F> {
    pub id: Uuid,
    pub patient_id: Uuid,
    pub versions: Vec<RecordVersion<F>>,
}

/// `GET /v1/patients/{id}/history`.
pub type PatientHistory = RecordHistory<PatientFields>;

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PatientFields {
        PatientFields {
            name: Some(HumanName {
                given: "Testa".into(),
                family: "Quill".into(),
                preferred: String::new(),
            }),
            birth_date: Some("1961-04-12".into()),
            ..PatientFields::default()
        }
    }

    #[test]
    fn hidden_fields_are_absent_not_null() {
        let mut f = sample().filled();
        f.retain(|name| name != "phone");
        let json = serde_json::to_value(&f).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert!(
            !keys.contains(&"phone") && keys.contains(&"email"),
            "{keys:?}"
        );
        assert!(!json.to_string().contains("null"));
    }

    #[test]
    fn debug_names_fields_never_values() {
        let text = format!("{:?}", sample());
        assert!(text.contains("birth_date"), "{text}");
        assert!(!text.contains("Testa") && !text.contains("1961"), "{text}");
    }

    #[test]
    fn names_follow_the_struct() {
        let all = PatientFields::default().filled();
        assert_eq!(all.present(), PatientFields::NAMES);
        assert_eq!(all.active, Some(true));
    }

    #[test]
    fn apply_and_differing_work_field_by_field() {
        let before = sample().filled();
        let change = PatientFields {
            phone: Some("555-0100".into()),
            ..PatientFields::default()
        };
        let mut after = before.clone();
        after.apply(&change);
        assert_eq!(before.differing(&after), vec!["phone"]);
        assert_eq!(after.name, before.name);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<PatientFields>(r#"{"passport":"x"}"#);
        assert!(err.is_err());
    }
}
