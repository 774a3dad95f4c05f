//! A patient's record as a FHIR R4 `Patient` and back: the exchange format other systems
//! speak, for reads (`GET /v1/fhir/Patient/{id}`) and for bringing a clinic's patients in
//! from Bulk Data NDJSON. Only what the reader may see is written, and FHIR allows no empty
//! values, so an empty field is left out.

use crate::wire::{Address, EmergencyContact, Gender, HumanName, Identifier, PatientFields};
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// The system of the clinic's own record numbers in FHIR identifiers.
pub const MRN_SYSTEM: &str = "urn:clinicdesk:mrn";
const V2_0203: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";
const BCP47: &str = "urn:ietf:bcp:47";

/// The system of US social security numbers: kept as the patient's `ssn` (encrypted).
pub const SSN_SYSTEM: &str = "http://hl7.org/fhir/sid/us-ssn";
/// Identifier kinds that are not kept on import: a driver's licence or passport number has
/// no encrypted field to go to. (An SSN, `SS`, becomes the patient's `ssn`.)
const SENSITIVE_KINDS: [&str; 3] = ["SS", "DL", "PPN"];

fn text(s: &str) -> Option<Value> {
    let s = s.trim();
    (!s.is_empty()).then(|| Value::String(s.to_owned()))
}

/// Inserts `value` under `key` unless it is absent or empty.
fn put(out: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    let empty = match &value {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    };
    if !empty && let Some(v) = value {
        out.insert(key.to_owned(), v);
    }
}

fn object(pairs: &[(&str, Option<Value>)]) -> Option<Value> {
    let mut out = Map::new();
    for (key, value) in pairs {
        put(&mut out, key, value.clone());
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

fn gender_code(g: Gender) -> &'static str {
    match g {
        Gender::Male => "male",
        Gender::Female => "female",
        Gender::Other => "other",
        Gender::Unknown => "unknown",
    }
}

fn name_json(n: &HumanName) -> Vec<Value> {
    let given: Vec<Value> = n.given.split_whitespace().map(|g| json!(g)).collect();
    let official = object(&[
        ("use", Some(json!("official"))),
        ("family", text(&n.family)),
        ("given", Some(Value::Array(given))),
    ]);
    let usual = text(&n.preferred).map(|p| json!({ "use": "usual", "given": [p] }));
    official.into_iter().chain(usual).collect()
}

fn address_json(a: &Address) -> Option<Value> {
    let lines: Vec<Value> = a.line.iter().filter_map(|l| text(l)).collect();
    let body = object(&[
        ("line", Some(Value::Array(lines))),
        ("city", text(&a.city)),
        ("state", text(&a.state)),
        ("postalCode", text(&a.postal_code)),
        ("country", text(&a.country)),
    ])?;
    let mut with_use = json!({ "use": "home" });
    with_use.as_object_mut()?.extend(body.as_object()?.clone());
    Some(with_use)
}

fn contact_json(c: &EmergencyContact) -> Option<Value> {
    let telecom = text(&c.phone).map(|p| json!([{ "system": "phone", "value": p }]));
    object(&[
        (
            "relationship",
            text(&c.relationship).map(|r| json!([{ "text": r }])),
        ),
        ("name", text(&c.name).map(|n| json!({ "text": n }))),
        ("telecom", telecom),
    ])
}

fn identifier_json(i: &Identifier) -> Option<Value> {
    let kind = text(&i.kind).map(|k| json!({ "coding": [{ "system": V2_0203, "code": k }] }));
    object(&[
        ("type", kind),
        ("system", text(&i.system)),
        ("value", Some(text(&i.value)?)),
    ])
}

/// The record as a FHIR R4 `Patient`, with only the fields `fields` carries.
pub fn to_fhir(id: Uuid, version: u64, fields: &PatientFields) -> Value {
    let mut out = Map::new();
    out.insert("resourceType".into(), json!("Patient"));
    out.insert("id".into(), json!(id.to_string()));
    out.insert("meta".into(), json!({ "versionId": version.to_string() }));
    let mut identifiers: Vec<Value> = Vec::new();
    if let Some(mrn) = fields.mrn.as_deref().and_then(text) {
        identifiers.push(json!({
            "type": { "coding": [{ "system": V2_0203, "code": "MR" }] },
            "system": MRN_SYSTEM,
            "value": mrn,
        }));
    }
    if let Some(ssn) = fields.ssn.as_deref().and_then(text) {
        identifiers.push(json!({
            "type": { "coding": [{ "system": V2_0203, "code": "SS" }] },
            "system": SSN_SYSTEM,
            "value": ssn,
        }));
    }
    identifiers.extend(
        fields
            .identifiers
            .iter()
            .flatten()
            .filter_map(identifier_json),
    );
    put(&mut out, "identifier", Some(Value::Array(identifiers)));
    put(&mut out, "active", fields.active.map(Value::Bool));
    put(
        &mut out,
        "name",
        fields.name.as_ref().map(|n| Value::Array(name_json(n))),
    );
    let mut telecom = Vec::new();
    if let Some(phone) = fields.phone.as_deref().and_then(text) {
        telecom.push(json!({ "system": "phone", "value": phone, "use": "home" }));
    }
    if let Some(email) = fields.email.as_deref().and_then(text) {
        telecom.push(json!({ "system": "email", "value": email }));
    }
    put(&mut out, "telecom", Some(Value::Array(telecom)));
    put(
        &mut out,
        "gender",
        fields.gender.map(|g| json!(gender_code(g))),
    );
    put(
        &mut out,
        "birthDate",
        fields.birth_date.as_deref().and_then(text),
    );
    let address = fields.address.as_ref().and_then(address_json);
    put(&mut out, "address", address.map(|a| json!([a])));
    let contact = fields.emergency_contact.as_ref().and_then(contact_json);
    put(&mut out, "contact", contact.map(|c| json!([c])));
    let language = fields.language.as_deref().and_then(text).map(|code| {
        json!([{ "language": { "coding": [{ "system": BCP47, "code": code }] }, "preferred": true }])
    });
    put(&mut out, "communication", language);
    Value::Object(out)
}

/// A FHIR `Patient` as served: the resource, and the record's fields it carries (for the
/// audit event of its disclosure).
#[derive(Debug, serde::Serialize)]
#[serde(transparent)]
pub struct FhirPatient {
    pub resource: Value,
    #[serde(skip)]
    pub id: Uuid,
    #[serde(skip)]
    pub fields: Vec<&'static str>,
}

impl FhirPatient {
    pub fn new(id: Uuid, version: u64, fields: &PatientFields) -> Self {
        Self {
            resource: to_fhir(id, version, fields),
            id,
            fields: fields.present(),
        }
    }
}

/// Why a resource of an import was not taken: a code, never a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    NotAPatient,
    NoId,
    NoName,
    NoBirthDate,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::NotAPatient => "not a Patient resource",
            Skip::NoId => "no resource id",
            Skip::NoName => "no family name",
            Skip::NoBirthDate => "no birth date",
        }
    }
}

/// A source `Patient`: its id in the source system, and its fields as this server keeps
/// them (record number left for the server to assign). Values are checked afterwards by
/// the same rules as a registration.
pub fn from_fhir(resource: &Value) -> Result<(String, PatientFields), Skip> {
    if resource["resourceType"] != "Patient" {
        return Err(Skip::NotAPatient);
    }
    let id = resource["id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or(Skip::NoId)?;
    let str_of = |v: &Value| v.as_str().unwrap_or_default().trim().to_owned();
    let names = resource["name"].as_array().cloned().unwrap_or_default();
    let official = names
        .iter()
        .find(|n| n["use"] == "official")
        .or_else(|| names.first())
        .ok_or(Skip::NoName)?;
    // Given names are kept as one string of words (the export gives a word each), so spacing
    // inside or between the parts is not part of the name.
    let given = |n: &Value| -> String {
        let parts = n["given"].as_array().into_iter().flatten();
        let words = parts.flat_map(|g| g.as_str().unwrap_or_default().split_whitespace());
        words.collect::<Vec<_>>().join(" ")
    };
    let preferred = names
        .iter()
        .find(|n| n["use"] == "usual" || n["use"] == "nickname")
        .map(given)
        .unwrap_or_default();
    let name = HumanName {
        given: given(official),
        family: str_of(&official["family"]),
        preferred,
    };
    if name.family.is_empty() {
        return Err(Skip::NoName);
    }
    let birth_date = str_of(&resource["birthDate"]);
    if birth_date.is_empty() {
        return Err(Skip::NoBirthDate);
    }
    let gender = match resource["gender"].as_str() {
        Some("male") => Gender::Male,
        Some("female") => Gender::Female,
        Some("other") => Gender::Other,
        _ => Gender::Unknown,
    };
    let telecom = resource["telecom"].as_array().cloned().unwrap_or_default();
    let first_of = |system: &str| {
        telecom
            .iter()
            .find(|t| t["system"] == system)
            .map(|t| str_of(&t["value"]))
            .unwrap_or_default()
    };
    let address = resource["address"]
        .as_array()
        .and_then(|a| a.first())
        .map(|a| Address {
            line: a["line"]
                .as_array()
                .map(|l| l.iter().map(str_of).filter(|l| !l.is_empty()).collect())
                .unwrap_or_default(),
            city: str_of(&a["city"]),
            state: str_of(&a["state"]),
            postal_code: str_of(&a["postalCode"]),
            country: str_of(&a["country"]),
        })
        .unwrap_or_default();
    let language = resource["communication"]
        .as_array()
        .and_then(|c| c.first())
        .map(|c| str_of(&c["language"]["coding"][0]["code"]))
        .unwrap_or_default();
    let emergency_contact = resource["contact"]
        .as_array()
        .and_then(|c| c.first())
        .map(|c| EmergencyContact {
            name: str_of(&c["name"]["text"]),
            relationship: str_of(&c["relationship"][0]["text"]),
            phone: c["telecom"]
                .as_array()
                .and_then(|t| t.iter().find(|t| t["system"] == "phone"))
                .map(|t| str_of(&t["value"]))
                .unwrap_or_default(),
        })
        .unwrap_or_default();
    let all_identifiers: Vec<Identifier> = resource["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| Identifier {
            system: str_of(&i["system"]),
            value: str_of(&i["value"]),
            kind: str_of(&i["type"]["coding"][0]["code"]),
        })
        .collect();
    // An SSN is known by its system or its kind, either alone: it goes to the encrypted
    // `ssn` field and never stays behind as an identifier in the clear.
    let is_ssn = |i: &Identifier| i.system == SSN_SYSTEM || i.kind == "SS";
    let ssn = all_identifiers
        .iter()
        .find(|i| is_ssn(i))
        .map(|i| i.value.clone())
        .unwrap_or_default();
    let identifiers = all_identifiers
        .into_iter()
        .filter(|i| {
            !i.value.is_empty() && !is_ssn(i) && !SENSITIVE_KINDS.contains(&i.kind.as_str())
        })
        .collect();
    let fields = PatientFields {
        mrn: None,
        identifiers: Some(identifiers),
        ssn: Some(ssn),
        name: Some(name),
        birth_date: Some(birth_date),
        gender: Some(gender),
        phone: Some(first_of("phone")),
        email: Some(first_of("email")),
        address: Some(address),
        language: Some(language),
        emergency_contact: Some(emergency_contact),
        active: Some(resource["active"].as_bool().unwrap_or(true)),
    };
    Ok((format!("Patient/{id}"), fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An SSN is known by its system alone too (many exports give no type), with stray
    /// spaces around it: it goes to the encrypted `ssn` field and never stays behind as a
    /// plain identifier (found by the `fhir_patient` fuzz target: the SSN came back as an
    /// identifier, in the clear, and moved on a second import).
    #[test]
    fn an_ssn_known_by_its_system_alone_is_never_kept_as_an_identifier() {
        for system in [SSN_SYSTEM.to_owned(), format!(" {SSN_SYSTEM} ")] {
            let source = json!({
                "resourceType": "Patient", "id": "abc",
                "identifier": [
                    { "system": "https://example.invalid/ids", "value": "abc" },
                    { "system": system, "value": "999-00-0001" }
                ],
                "name": [{ "family": "Quill1", "given": ["Testa2"] }],
                "birthDate": "1949-11-14"
            });
            let (_, fields) = from_fhir(&source).unwrap();
            assert_eq!(fields.ssn.as_deref(), Some("999-00-0001"));
            let kept = fields.identifiers.clone().unwrap();
            assert_eq!(kept.len(), 1, "only the other system's identifier is kept");
            assert_eq!(kept[0].value, "abc");
            let (_, again) = from_fhir(&to_fhir(Uuid::nil(), 1, &fields)).unwrap();
            assert!(
                again == fields,
                "the same after an export and a second import"
            );
        }
    }

    /// Names and address lines come back as they went in whatever their spacing: runs of
    /// spaces inside a given name, empty given names and empty address lines (found by the
    /// `fhir_patient` fuzz target in CI: a given name with a run of spaces inside was split
    /// on export and joined by one space on the next import, so the name changed).
    #[test]
    fn spacing_in_names_and_address_lines_survives_an_export_and_a_second_import() {
        let source = json!({
            "resourceType": "Patient", "id": "abc",
            "name": [
                { "use": "official", "family": "Quill1", "given": ["Testa2   Lee", "", " Mae3"] },
                { "use": "usual", "given": ["", "Tess  A"] }
            ],
            "birthDate": "1949-11-14",
            "address": [{ "line": ["", "1 Nowhere Spur", "  "], "city": "Testford" }]
        });
        let (_, fields) = from_fhir(&source).unwrap();
        let name = fields.name.clone().unwrap();
        assert_eq!(name.given, "Testa2 Lee Mae3");
        assert_eq!(name.preferred, "Tess A");
        assert_eq!(fields.address.clone().unwrap().line, ["1 Nowhere Spur"]);
        let (_, again) = from_fhir(&to_fhir(Uuid::nil(), 1, &fields)).unwrap();
        assert!(
            again == fields,
            "the same after an export and a second import"
        );
    }

    #[test]
    fn a_patient_round_trips_its_ssn_goes_to_its_field_and_other_sensitive_ids_stay_behind() {
        let source = json!({
            "resourceType": "Patient", "id": "abc",
            "identifier": [
                { "system": "https://example.invalid/ids", "value": "abc" },
                { "type": { "coding": [{ "system": V2_0203, "code": "SS" }] },
                  "system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-00-0000" },
                { "type": { "coding": [{ "system": V2_0203, "code": "DL" }] },
                  "system": "urn:oid:2.16.840.1.113883.4.3.25", "value": "S99900001" }
            ],
            "name": [{ "use": "official", "family": "Quill1", "given": ["Testa2", "Mae3"] }],
            "telecom": [{ "system": "phone", "value": "555-907-9875", "use": "home" }],
            "gender": "female", "birthDate": "1949-11-14",
            "address": [{ "line": ["1 Nowhere Spur"], "city": "Testford", "state": "KS",
                          "postalCode": "66104", "country": "US" }],
            "communication": [{ "language": { "coding": [{ "system": BCP47, "code": "en-US" }] } }]
        });
        let (key, fields) = from_fhir(&source).unwrap();
        assert_eq!(key, "Patient/abc");
        let ids = fields.identifiers.clone().unwrap();
        assert_eq!(
            ids.len(),
            1,
            "neither the SSN nor the licence is an identifier kept"
        );
        assert_eq!(fields.ssn.as_deref(), Some("999-00-0000"));
        let back = to_fhir(Uuid::nil(), 1, &fields);
        assert_eq!(back["identifier"][0]["system"], SSN_SYSTEM);
        assert_eq!(back["identifier"][0]["value"], "999-00-0000");
        assert!(!back.to_string().contains("S99900001"));
        let mut without = fields.clone();
        without.ssn = None;
        let back = to_fhir(Uuid::nil(), 1, &without);
        assert_eq!(back["name"][0]["given"], json!(["Testa2", "Mae3"]));
        assert_eq!(back["name"][0]["family"], "Quill1");
        assert_eq!(back["birthDate"], "1949-11-14");
        assert_eq!(back["telecom"], source["telecom"]);
        assert_eq!(back["address"][0]["postalCode"], "66104");
        assert_eq!(back["identifier"][0]["value"], "abc");
        assert!(!back.to_string().contains("999-00"));
        assert!(back.get("contact").is_none(), "no empty values: {back}");
        assert_eq!(
            from_fhir(&json!({ "resourceType": "Patient", "id": "x" })).unwrap_err(),
            Skip::NoName
        );
    }
}
