//! `Patient/{id}/$everything`: a patient's record as a FHIR R4 `Bundle` (searchset): the
//! `Patient`, and their `Coverage`s and `Appointment`s, each cut to the caller's field
//! policy; a resource the caller may read too little of to make a valid one (a coverage
//! without its payer, an appointment without its status) is left out. The patient's right of
//! access, and the format other systems speak.

use clinicdesk_protocol::wire::{
    AppointmentFields, AppointmentRecord, AppointmentStatus, CoverageFields, CoverageRecord,
    SubscriberRelationship, UserInfo,
};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::clinical::{booking, coverage, fhir_patient, records};
use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::state::AppState;

const V2_0276: &str = "http://terminology.hl7.org/CodeSystem/v2-0276";
const COVERAGE_CLASS: &str = "http://terminology.hl7.org/CodeSystem/coverage-class";
const RELATIONSHIP: &str = "http://terminology.hl7.org/CodeSystem/subscriber-relationship";

/// The Bundle as served, and the fields it carries (for the audit event of the
/// disclosure: the patient's own by name, the others as `Coverage.payer`, ...).
#[derive(Debug, serde::Serialize)]
#[serde(transparent)]
pub struct FhirEverything {
    pub bundle: Value,
    #[serde(skip)]
    pub patient_id: Uuid,
    #[serde(skip)]
    pub fields: Vec<String>,
}

/// Inserts `value` under `key` unless it is empty.
fn put(out: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    match value {
        Some(Value::String(s)) if s.trim().is_empty() => {}
        Some(v) => {
            out.insert(key.to_owned(), v);
        }
        None => {}
    }
}

fn text(s: Option<&String>) -> Option<Value> {
    s.filter(|s| !s.trim().is_empty()).map(|s| json!(s.trim()))
}

fn meta(version: u64) -> Value {
    json!({ "versionId": version.to_string() })
}

fn relationship_code(r: SubscriberRelationship) -> &'static str {
    match r {
        SubscriberRelationship::Own => "self",
        SubscriberRelationship::Spouse => "spouse",
        SubscriberRelationship::Child => "child",
        SubscriberRelationship::Parent => "parent",
        SubscriberRelationship::Other => "other",
    }
}

/// A coverage as a FHIR R4 `Coverage`, if the reader may see its payer (required).
pub fn coverage_to_fhir(c: &CoverageRecord) -> Option<Value> {
    let f: &CoverageFields = &c.fields;
    let payer = text(f.payer.as_ref())?;
    let mut out = Map::new();
    out.insert("resourceType".into(), json!("Coverage"));
    out.insert("id".into(), json!(c.id.to_string()));
    out.insert("meta".into(), meta(c.version));
    let status = if f.active == Some(false) {
        "cancelled"
    } else {
        "active"
    };
    out.insert("status".into(), json!(status));
    put(&mut out, "subscriberId", text(f.member_id.as_ref()));
    out.insert(
        "beneficiary".into(),
        json!({ "reference": format!("Patient/{}", c.patient_id) }),
    );
    if let Some(r) = f.subscriber_relationship {
        out.insert(
            "relationship".into(),
            json!({ "coding": [{ "system": RELATIONSHIP, "code": relationship_code(r) }] }),
        );
    }
    let mut period = Map::new();
    put(&mut period, "start", text(f.period_start.as_ref()));
    put(&mut period, "end", text(f.period_end.as_ref()));
    if !period.is_empty() {
        out.insert("period".into(), Value::Object(period));
    }
    out.insert("payor".into(), json!([{ "display": payer }]));
    if let Some(group) = text(f.group.as_ref()) {
        out.insert(
            "class".into(),
            json!([{ "type": { "coding": [{ "system": COVERAGE_CLASS, "code": "group" }] },
                     "value": group }]),
        );
    }
    Some(Value::Object(out))
}

fn status_code(s: AppointmentStatus) -> &'static str {
    match s {
        AppointmentStatus::Booked => "booked",
        AppointmentStatus::Arrived => "arrived",
        AppointmentStatus::CheckedIn => "checked-in",
        AppointmentStatus::Fulfilled => "fulfilled",
        AppointmentStatus::Cancelled => "cancelled",
        AppointmentStatus::NoShow => "noshow",
        AppointmentStatus::EnteredInError => "entered-in-error",
    }
}

/// An appointment as a FHIR R4 `Appointment`, if the reader may see its status and who
/// takes part (both required).
pub fn appointment_to_fhir(a: &AppointmentRecord) -> Option<Value> {
    let f: &AppointmentFields = &a.fields;
    let status = f.status?;
    let patient = f.patient_id?;
    let mut out = Map::new();
    out.insert("resourceType".into(), json!("Appointment"));
    out.insert("id".into(), json!(a.id.to_string()));
    out.insert("meta".into(), meta(a.version));
    out.insert("status".into(), json!(status_code(status)));
    if let Some(reason) = text(f.cancellation_reason.as_ref()) {
        out.insert("cancelationReason".into(), json!({ "text": reason }));
    }
    if let Some(kind) = f.appointment_type.as_deref().filter(|t| !t.is_empty()) {
        out.insert(
            "appointmentType".into(),
            json!({ "coding": [{ "system": V2_0276, "code": kind.to_uppercase() }] }),
        );
    }
    put(&mut out, "description", text(f.reason.as_ref()));
    // FHIR wants both ends or neither: the end is the start plus the duration.
    let start = f
        .start
        .as_deref()
        .and_then(|s| s.parse::<jiff::Timestamp>().ok());
    if let (Some(start), Some(mins), Some(text)) = (start, f.duration_mins, f.start.as_ref()) {
        let end = start.checked_add(jiff::SignedDuration::from_mins(i64::from(mins)));
        if let Ok(end) = end {
            out.insert("start".into(), json!(text));
            out.insert("end".into(), json!(end.to_string()));
            out.insert("minutesDuration".into(), json!(mins));
        }
    }
    let mut participants = vec![
        json!({ "actor": { "reference": format!("Patient/{patient}") }, "status": "accepted" }),
    ];
    if let Some(p) = f.practitioner_id {
        participants.push(
            json!({ "actor": { "reference": format!("Practitioner/{p}") }, "status": "accepted" }),
        );
    }
    out.insert("participant".into(), Value::Array(participants));
    Some(Value::Object(out))
}

/// The patient's record as `user` may read it, as a Bundle.
pub async fn everything(
    state: &AppState,
    scope: &ClinicScope,
    user: &UserInfo,
    patient_id: Uuid,
) -> Result<FhirEverything, ServerError> {
    let record = records::record(state, scope, user, patient_id).await?;
    let coverages = coverage::list(&state.store, scope, user, patient_id).await?;
    let appointments = booking::of_patient(&state.store, scope, user, patient_id).await?;

    let mut fields: Vec<String> = record
        .fields
        .present()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let mut note = |kind: &str, present: Vec<&'static str>| {
        for name in present {
            let named = format!("{kind}.{name}");
            if !fields.contains(&named) {
                fields.push(named);
            }
        }
    };
    let mut entries = vec![json!({
        "resource": fhir_patient::to_fhir(record.id, record.version, &record.fields),
        "search": { "mode": "match" },
    })];
    for c in &coverages.coverages {
        if let Some(resource) = coverage_to_fhir(c) {
            note("Coverage", c.fields.present());
            entries.push(json!({ "resource": resource, "search": { "mode": "include" } }));
        }
    }
    for a in &appointments {
        if let Some(resource) = appointment_to_fhir(a) {
            note("Appointment", a.fields.present());
            entries.push(json!({ "resource": resource, "search": { "mode": "include" } }));
        }
    }
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 1,
        "entry": entries,
    });
    Ok(FhirEverything {
        bundle,
        patient_id,
        fields,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clinicdesk_protocol::fhir_records::{
        PractitionerRef, appointment_from_fhir, coverage_from_fhir,
    };
    use uuid::Uuid;

    use super::*;

    /// What one clinic exports, another imports unchanged: a record read out through
    /// `$everything` and imported elsewhere says what it said (the import resolves the
    /// references; here they are the same ids).
    #[test]
    fn an_exported_coverage_and_appointment_import_again_unchanged() {
        let patient = Uuid::from_u128(7);
        let relationships = [
            SubscriberRelationship::Own,
            SubscriberRelationship::Spouse,
            SubscriberRelationship::Child,
            SubscriberRelationship::Parent,
            SubscriberRelationship::Other,
        ];
        for (i, relationship) in relationships.into_iter().enumerate() {
            let fields = CoverageFields {
                payer: Some("Synthetic Mutual".into()),
                member_id: Some(format!("SYN-{i}")),
                group: Some(if i % 2 == 0 {
                    "G-1".into()
                } else {
                    String::new()
                }),
                subscriber_relationship: Some(relationship),
                period_start: Some("2025-01-01".into()),
                period_end: Some(if i % 2 == 0 {
                    String::new()
                } else {
                    "2026-12-31".into()
                }),
                active: Some(i % 2 == 0),
            }
            .filled();
            let record = CoverageRecord {
                id: Uuid::from_u128(1),
                patient_id: patient,
                version: 1,
                fields: fields.clone(),
            };
            let back = coverage_from_fhir(&coverage_to_fhir(&record).unwrap()).unwrap();
            assert_eq!(back.patient, patient.to_string());
            assert_eq!(back.fields, fields, "{relationship:?}");
        }

        let practitioner = Uuid::from_u128(9);
        let statuses = [
            AppointmentStatus::Booked,
            AppointmentStatus::Arrived,
            AppointmentStatus::Fulfilled,
            AppointmentStatus::Cancelled,
            AppointmentStatus::NoShow,
            AppointmentStatus::EnteredInError,
        ];
        for (i, status) in statuses.into_iter().enumerate() {
            let cancelled = status == AppointmentStatus::Cancelled;
            let fields = AppointmentFields {
                patient_id: Some(patient),
                practitioner_id: Some(practitioner),
                start: Some("2027-03-01T14:30:00Z".into()),
                duration_mins: Some(15 + 5 * u32::try_from(i).unwrap()),
                appointment_type: Some(
                    ["routine", "walkin", "checkup", "followup", "emergency"][i % 5].into(),
                ),
                reason: Some(if i == 0 {
                    String::new()
                } else {
                    "Synthetic review".into()
                }),
                status: Some(status),
                cancellation_reason: Some(if cancelled {
                    "Synthetic clash".into()
                } else {
                    String::new()
                }),
            };
            let record = AppointmentRecord {
                id: Uuid::from_u128(2),
                version: 1,
                fields: fields.clone(),
                encounter_id: None,
            };
            let exported = appointment_to_fhir(&record).unwrap();
            let back = appointment_from_fhir(&exported).unwrap();
            assert_eq!(back.patient, patient.to_string());
            assert_eq!(
                back.practitioner,
                PractitionerRef::Id(practitioner.to_string())
            );
            let mut imported = back.fields;
            imported.patient_id = Some(patient);
            imported.practitioner_id = Some(practitioner);
            assert_eq!(imported, fields, "{status:?}");
        }
    }
}
