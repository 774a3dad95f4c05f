//! The other resources an import reads from a clinic's old system (FHIR R4 Bulk Data
//! NDJSON), besides `Patient` ([`crate::fhir_patient`]): `Practitioner` (a directory entry
//! an admin links to a clinician's account), `Coverage` and `Appointment`. Pure mapping:
//! references to other source resources are returned as the source's ids, for the server
//! to resolve; values are checked afterwards by the same rules as a write through the API.
//! A resource that cannot be taken is answered with a reason that names no value.

use serde_json::Value;

use crate::wire::{AppointmentFields, AppointmentStatus, CoverageFields, SubscriberRelationship};

/// The system of US National Provider Identifiers.
pub const NPI_SYSTEM: &str = "http://hl7.org/fhir/sid/us-npi";

/// Why a source resource was not taken (never a value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    NoId,
    NoName,
    NoPatient,
    NoPractitioner,
    NoPayer,
    NoMemberId,
    NoStart,
    NoDuration,
    /// `proposed`, `pending`, `waitlist`: requests, not appointments.
    NotBooked,
    /// `checked-in`: a visit under way at the source, whose encounter is not imported.
    VisitUnderWay,
    /// `draft` or `entered-in-error`.
    NotInForce,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::NoId => "no resource id",
            Skip::NoName => "no name",
            Skip::NoPatient => "no patient reference",
            Skip::NoPractitioner => "no practitioner reference",
            Skip::NoPayer => "no payer name",
            Skip::NoMemberId => "no member id",
            Skip::NoStart => "no start",
            Skip::NoDuration => "no end or duration",
            Skip::NotBooked => "status is a request, not a booking",
            Skip::VisitUnderWay => "checked in at the source: check the patient in here",
            Skip::NotInForce => "status draft or entered-in-error",
        }
    }
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().trim().to_owned()
}

fn id_of(resource: &Value) -> Result<String, Skip> {
    let id = str_of(&resource["id"]);
    if id.is_empty() {
        Err(Skip::NoId)
    } else {
        Ok(id)
    }
}

/// The id a reference names in `kind` (`Patient/abc`, `https://old/fhir/Patient/abc`,
/// `Patient/abc/_history/2`): `abc`.
pub fn referenced_id(reference: &Value, kind: &str) -> Option<String> {
    let text = reference["reference"].as_str()?;
    let prefix = format!("{kind}/");
    let at = text.rfind(&prefix).filter(|at| {
        // `Patient/` must start a path segment, not end another word (`OldPatient/`).
        *at == 0 || text[..*at].ends_with('/')
    })?;
    let rest = &text[at + prefix.len()..];
    let id = rest.split('/').next().unwrap_or_default().trim();
    (!id.is_empty()).then(|| id.to_owned())
}

/// How a source resource names its practitioner: by the id of a `Practitioner` in the
/// export, or by NPI (a conditional reference, `Practitioner?identifier=<NPI system>|<npi>`,
/// as Synthea writes them, or a logical one, `{"identifier": {...}}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PractitionerRef {
    Id(String),
    Npi(String),
}

impl PractitionerRef {
    fn of(actor: &Value) -> Option<PractitionerRef> {
        if let Some(id) = referenced_id(actor, "Practitioner") {
            return Some(PractitionerRef::Id(id));
        }
        let by_query = actor["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix("Practitioner?identifier="))
            .and_then(|q| q.split_once('|'))
            .filter(|(system, _)| *system == NPI_SYSTEM)
            .map(|(_, npi)| npi.trim().to_owned());
        let logical = || {
            let identifier = &actor["identifier"];
            (identifier["system"] == NPI_SYSTEM).then(|| str_of(&identifier["value"]))
        };
        by_query
            .or_else(logical)
            .filter(|npi| !npi.is_empty())
            .map(PractitionerRef::Npi)
    }
}

/// The first coding's code or, failing that, the concept's text.
fn concept_code(concept: &Value) -> String {
    let code = str_of(&concept["coding"][0]["code"]);
    if code.is_empty() {
        str_of(&concept["text"])
    } else {
        code
    }
}

/// The concept's text, or its first coding's display, or its code.
fn concept_text(concept: &Value) -> String {
    [
        &concept["text"],
        &concept["coding"][0]["display"],
        &concept["coding"][0]["code"],
    ]
    .into_iter()
    .map(str_of)
    .find(|t| !t.is_empty())
    .unwrap_or_default()
}

/// A source `Practitioner`, as the clinic's directory keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePractitioner {
    pub id: String,
    /// As people read it: prefix, given names and family name.
    pub name: String,
    /// Empty when the source gives none.
    pub npi: String,
    pub active: bool,
}

pub fn practitioner_from_fhir(resource: &Value) -> Result<SourcePractitioner, Skip> {
    let id = id_of(resource)?;
    let names = resource["name"].as_array().cloned().unwrap_or_default();
    let official = names
        .iter()
        .find(|n| n["use"] == "official")
        .or_else(|| names.first())
        .ok_or(Skip::NoName)?;
    let mut words: Vec<String> = Vec::new();
    for part in ["prefix", "given"] {
        for w in official[part].as_array().into_iter().flatten() {
            words.extend(str_of(w).split_whitespace().map(str::to_owned));
        }
    }
    words.extend(
        str_of(&official["family"])
            .split_whitespace()
            .map(str::to_owned),
    );
    let mut name = words.join(" ");
    if name.is_empty() {
        name = str_of(&official["text"])
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
    }
    if name.is_empty() {
        return Err(Skip::NoName);
    }
    let npi = resource["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["system"] == NPI_SYSTEM)
        .map(|i| str_of(&i["value"]))
        .unwrap_or_default();
    Ok(SourcePractitioner {
        id,
        name,
        npi,
        active: resource["active"].as_bool().unwrap_or(true),
    })
}

/// A source `Coverage`: its id, its beneficiary's source id, and its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceCoverage {
    pub id: String,
    pub patient: String,
    pub fields: CoverageFields,
}

/// A FHIR date (`YYYY-MM-DD`), or the date of a dateTime; anything else as given, for the
/// server's check to refuse by field name.
fn date_of(v: &Value) -> Option<String> {
    let s = str_of(v);
    if s.is_empty() {
        return None;
    }
    match s.get(..10) {
        Some(day) if s.len() > 10 && s.as_bytes()[10] == b'T' => Some(day.to_owned()),
        _ => Some(s),
    }
}

pub fn coverage_from_fhir(resource: &Value) -> Result<SourceCoverage, Skip> {
    let id = id_of(resource)?;
    let patient = referenced_id(&resource["beneficiary"], "Patient").ok_or(Skip::NoPatient)?;
    let active = match resource["status"].as_str() {
        Some("cancelled") => false,
        Some("draft" | "entered-in-error") => return Err(Skip::NotInForce),
        _ => true,
    };
    let payer = resource["payor"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| str_of(&p["display"]))
        .find(|p| !p.is_empty())
        .ok_or(Skip::NoPayer)?;
    let member_id = Some(str_of(&resource["subscriberId"]))
        .filter(|m| !m.is_empty())
        .or_else(|| {
            resource["identifier"]
                .as_array()
                .and_then(|ids| ids.first())
                .map(|i| str_of(&i["value"]))
                .filter(|m| !m.is_empty())
        })
        .ok_or(Skip::NoMemberId)?;
    let group = resource["class"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| concept_code(&c["type"]) == "group")
        .map(|c| str_of(&c["value"]))
        .filter(|g| !g.is_empty());
    let subscriber_relationship = match concept_code(&resource["relationship"]).as_str() {
        "" | "self" => SubscriberRelationship::Own,
        "spouse" | "common" => SubscriberRelationship::Spouse,
        "child" => SubscriberRelationship::Child,
        "parent" => SubscriberRelationship::Parent,
        _ => SubscriberRelationship::Other,
    };
    let fields = CoverageFields {
        payer: Some(payer),
        member_id: Some(member_id),
        group,
        subscriber_relationship: Some(subscriber_relationship),
        period_start: date_of(&resource["period"]["start"]),
        period_end: date_of(&resource["period"]["end"]),
        active: Some(active),
    };
    Ok(SourceCoverage {
        id,
        patient,
        fields: fields.filled(),
    })
}

/// The appointment types this server books (HL7 v2 table 0276, lower-cased).
pub const APPOINTMENT_TYPES: [&str; 5] = ["routine", "walkin", "checkup", "followup", "emergency"];

/// What a cancellation carries when the source gave no reason (the API requires one).
pub const NO_REASON_GIVEN: &str = "not given in the imported record";

/// A source `Appointment`: its id, its patient's and practitioner's source ids, and its
/// fields (without the two references, which the server resolves, and without a duration
/// when the source gave only the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAppointment {
    pub id: String,
    pub patient: String,
    pub practitioner: PractitionerRef,
    /// The source's end (an instant), for the server to make the duration of when the
    /// source gave no `minutesDuration`.
    pub end: String,
    pub fields: AppointmentFields,
}

pub fn appointment_from_fhir(resource: &Value) -> Result<SourceAppointment, Skip> {
    let id = id_of(resource)?;
    let status = match resource["status"].as_str() {
        Some("booked") => AppointmentStatus::Booked,
        Some("arrived") => AppointmentStatus::Arrived,
        Some("fulfilled") => AppointmentStatus::Fulfilled,
        Some("cancelled") => AppointmentStatus::Cancelled,
        Some("noshow") => AppointmentStatus::NoShow,
        Some("entered-in-error") => AppointmentStatus::EnteredInError,
        Some("checked-in") => return Err(Skip::VisitUnderWay),
        _ => return Err(Skip::NotBooked),
    };
    let participants = resource["participant"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let actor = |kind: &str| {
        participants
            .iter()
            .find_map(|p| referenced_id(&p["actor"], kind))
    };
    let patient = actor("Patient").ok_or(Skip::NoPatient)?;
    let practitioner = participants
        .iter()
        .find_map(|p| PractitionerRef::of(&p["actor"]))
        .ok_or(Skip::NoPractitioner)?;
    let start = str_of(&resource["start"]);
    if start.is_empty() {
        return Err(Skip::NoStart);
    }
    let minutes = resource["minutesDuration"].as_u64();
    let end = str_of(&resource["end"]);
    if minutes.is_none() && end.is_empty() {
        return Err(Skip::NoDuration);
    }
    let kind = concept_code(&resource["appointmentType"]).to_lowercase();
    let appointment_type = if APPOINTMENT_TYPES.contains(&kind.as_str()) {
        kind
    } else {
        "routine".to_owned()
    };
    let reason = Some(str_of(&resource["description"]))
        .filter(|r| !r.is_empty())
        .or_else(|| {
            resource["reasonCode"]
                .as_array()
                .and_then(|r| r.first())
                .map(concept_text)
        })
        .unwrap_or_default();
    let mut cancellation_reason = concept_text(&resource["cancelationReason"]);
    if status == AppointmentStatus::Cancelled && cancellation_reason.is_empty() {
        cancellation_reason = NO_REASON_GIVEN.to_owned();
    }
    Ok(SourceAppointment {
        id,
        patient,
        practitioner,
        end,
        fields: AppointmentFields {
            patient_id: None,
            practitioner_id: None,
            start: Some(start),
            // A duration beyond u32 is out of range anyway: the server refuses it by name.
            duration_mins: minutes.map(|m| u32::try_from(m).unwrap_or(u32::MAX)),
            appointment_type: Some(appointment_type),
            reason: Some(reason),
            status: Some(status),
            cancellation_reason: Some(cancellation_reason),
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn references_name_the_id_of_their_kind_only() {
        let r = |s: &str| json!({ "reference": s });
        assert_eq!(
            referenced_id(&r("Patient/p1"), "Patient").as_deref(),
            Some("p1")
        );
        assert_eq!(
            referenced_id(
                &r("https://old.example/fhir/Patient/p1/_history/3"),
                "Patient"
            )
            .as_deref(),
            Some("p1")
        );
        assert_eq!(referenced_id(&r("Practitioner/d1"), "Patient"), None);
        assert_eq!(referenced_id(&r("OldPatient/p1"), "Patient"), None);
        assert_eq!(referenced_id(&r("Patient/"), "Patient"), None);
        assert_eq!(referenced_id(&json!({ "display": "x" }), "Patient"), None);
    }

    #[test]
    fn an_appointment_keeps_its_status_time_type_and_reasons() {
        let source = json!({
            "resourceType": "Appointment", "id": "a1", "status": "cancelled",
            "appointmentType": { "coding": [{ "code": "FOLLOWUP" }] },
            "reasonCode": [{ "text": "Synthetic review" }],
            "start": "2026-03-08T09:00:00-05:00", "end": "2026-03-08T09:20:00-05:00",
            "participant": [
                { "actor": { "reference": "Practitioner/d1" } },
                { "actor": { "reference": "Patient/p1" } }
            ]
        });
        let a = appointment_from_fhir(&source).unwrap();
        assert_eq!(a.patient, "p1");
        assert_eq!(a.practitioner, PractitionerRef::Id("d1".into()));
        assert_eq!(a.fields.duration_mins, None);
        assert_eq!(a.end, "2026-03-08T09:20:00-05:00");
        assert_eq!(a.fields.appointment_type.as_deref(), Some("followup"));
        assert_eq!(a.fields.reason.as_deref(), Some("Synthetic review"));
        assert_eq!(a.fields.status, Some(AppointmentStatus::Cancelled));
        // A cancellation needs a reason; the source gave none.
        assert_eq!(
            a.fields.cancellation_reason.as_deref(),
            Some(NO_REASON_GIVEN)
        );

        for (status, skip) in [
            ("proposed", Skip::NotBooked),
            ("waitlist", Skip::NotBooked),
            ("checked-in", Skip::VisitUnderWay),
        ] {
            let mut s = source.clone();
            s["status"] = status.into();
            assert_eq!(appointment_from_fhir(&s), Err(skip), "{status}");
        }
        let mut no_end = source.clone();
        no_end.as_object_mut().unwrap().remove("end");
        assert_eq!(appointment_from_fhir(&no_end), Err(Skip::NoDuration));
        no_end["minutesDuration"] = 15.into();
        assert_eq!(
            appointment_from_fhir(&no_end).unwrap().fields.duration_mins,
            Some(15)
        );
        let mut alone = source.clone();
        alone["participant"] = json!([{ "actor": { "reference": "Patient/p1" } }]);
        assert_eq!(appointment_from_fhir(&alone), Err(Skip::NoPractitioner));
        // By NPI: a conditional reference (as Synthea writes them) or a logical one.
        let npi = "9999990001";
        for actor in [
            json!({ "reference": format!("Practitioner?identifier={NPI_SYSTEM}|{npi}") }),
            json!({ "identifier": { "system": NPI_SYSTEM, "value": npi } }),
        ] {
            let mut by_npi = source.clone();
            by_npi["participant"] =
                json!([{ "actor": { "reference": "Patient/p1" } }, { "actor": actor }]);
            let a = appointment_from_fhir(&by_npi).unwrap();
            assert_eq!(a.practitioner, PractitionerRef::Npi(npi.into()));
        }
        // Another system's identifier is no NPI.
        let mut other = source.clone();
        other["participant"] = json!([{ "actor": { "reference": "Patient/p1" } },
            { "actor": { "reference": "Practitioner?identifier=urn:other|1" } }]);
        assert_eq!(appointment_from_fhir(&other), Err(Skip::NoPractitioner));
    }

    #[test]
    fn a_coverage_keeps_payer_member_group_relationship_and_period() {
        let source = json!({
            "resourceType": "Coverage", "id": "c1", "status": "active",
            "subscriberId": "SYN-1", "beneficiary": { "reference": "Patient/p1" },
            "relationship": { "coding": [{ "code": "spouse" }] },
            "period": { "start": "2025-01-01T00:00:00Z" },
            "payor": [{ "reference": "Organization/o1" }, { "display": "Synthetic Mutual" }],
            "class": [{ "type": { "coding": [{ "code": "plan" }] }, "value": "P" },
                      { "type": { "coding": [{ "code": "group" }] }, "value": "G-7" }]
        });
        let c = coverage_from_fhir(&source).unwrap();
        assert_eq!(c.patient, "p1");
        let f = &c.fields;
        assert_eq!(f.payer.as_deref(), Some("Synthetic Mutual"));
        assert_eq!(f.member_id.as_deref(), Some("SYN-1"));
        assert_eq!(f.group.as_deref(), Some("G-7"));
        assert_eq!(
            f.subscriber_relationship,
            Some(SubscriberRelationship::Spouse)
        );
        assert_eq!(f.period_start.as_deref(), Some("2025-01-01"));
        assert_eq!(f.period_end.as_deref(), Some(""));
        assert_eq!(f.active, Some(true));

        let mut ended = source.clone();
        ended["status"] = "cancelled".into();
        assert_eq!(
            coverage_from_fhir(&ended).unwrap().fields.active,
            Some(false)
        );
        let mut draft = source.clone();
        draft["status"] = "draft".into();
        assert_eq!(coverage_from_fhir(&draft), Err(Skip::NotInForce));
        let mut unnamed = source.clone();
        unnamed["payor"] = json!([{ "reference": "Organization/o1" }]);
        assert_eq!(coverage_from_fhir(&unnamed), Err(Skip::NoPayer));
    }

    #[test]
    fn a_practitioner_is_named_as_people_read_it_with_the_npi() {
        let source = json!({
            "resourceType": "Practitioner", "id": "d1",
            "identifier": [{ "system": NPI_SYSTEM, "value": "9999992198" }],
            "name": [{ "family": "Bergstrom287", "given": ["Randy380"], "prefix": ["Dr."] }]
        });
        let p = practitioner_from_fhir(&source).unwrap();
        assert_eq!(p.name, "Dr. Randy380 Bergstrom287");
        assert_eq!((p.npi.as_str(), p.active), ("9999992198", true));
        let mut nameless = source.clone();
        nameless["name"] = json!([{}]);
        assert_eq!(practitioner_from_fhir(&nameless), Err(Skip::NoName));
    }
}
