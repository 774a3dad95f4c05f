//! Bringing a clinic in from its old system: the 120 Synthea patients of a FHIR R4 Bulk
//! Data export arrive through the CLI with their names, birth dates, genders, addresses,
//! phones and (non-sensitive) identifiers intact, each with its first version and `create`
//! event; a second run changes nothing; and each comes back out of
//! `GET /v1/fhir/Patient/{id}` as a valid R4 Patient (checked by fhir.resources).

use std::collections::HashMap;
use std::path::Path;

use clinicdesk_server::audit::key::PublicKey;
use clinicdesk_server::audit::verify::verify_all;
use serde_json::Value;
use uuid::Uuid;

use crate::harness::{SignedIn, TestServer, cli, fhir_validate};

const EXPORT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/synthea-100-patients"
);

/// `clinicdesk-server import` of the export in `dir` (with `extra` arguments), which must
/// succeed: its stdout and stderr.
fn run_import(server: &TestServer, clinic: Uuid, dir: &Path, extra: &[&str]) -> (String, String) {
    let out = cli(server)
        .args(["import", "--clinic", &clinic.to_string()])
        .args(extra)
        .arg("--data-dir")
        .arg(server.dir.path())
        .arg("--fhir-ndjson")
        .arg(dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

fn import(server: &TestServer, clinic: Uuid) -> Value {
    let (stdout, _) = run_import(server, clinic, Path::new(EXPORT), &["--json"]);
    serde_json::from_str(&stdout).unwrap()
}

/// The source Patients, by id.
fn sources() -> HashMap<String, Value> {
    let text = std::fs::read_to_string(format!("{EXPORT}/Patient.000.ndjson")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|p| (p["id"].as_str().unwrap().to_owned(), p))
        .collect()
}

fn validate(ndjson: &str) -> std::process::Output {
    fhir_validate("fhir_validate_patients.py", ndjson)
}

#[tokio::test]
async fn synthea_patients_arrive_intact_once_and_read_back_as_valid_r4() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login,
    } = server.signed_in(0xA, "frontdesk").await;
    let token = login.session_token.expose();
    let sources = sources();

    let first = import(&server, report.clinic_id);
    assert_eq!(first["imported"], 120, "{first}");
    assert_eq!(first["skipped"], serde_json::json!([]));
    // The export's other files are named, not silently dropped.
    assert!(
        first["not_imported"].to_string().contains("Practitioner"),
        "{first}"
    );
    // Each has its first version and its `create` event, by the operator's console.
    let creates: Vec<_> = server
        .events_of("create")
        .await
        .into_iter()
        .filter(|e| e.resource_type == "Patient")
        .collect();
    assert_eq!(creates.len(), 120);
    assert!(
        creates
            .iter()
            .all(|e| e.route == "import" && e.actor_user_id == Uuid::nil())
    );

    // Again: nothing changes.
    let second = import(&server, report.clinic_id);
    assert_eq!(
        (second["imported"].clone(), second["unchanged"].clone()),
        (0.into(), 120.into())
    );
    assert_eq!(
        server
            .events_of("create")
            .await
            .iter()
            .filter(|e| e.resource_type == "Patient")
            .count(),
        120
    );

    // Every patient, read back as FHIR, carries what the source said.
    let mut served = String::new();
    for event in &creates {
        let id = event.patient_id.unwrap();
        let (status, fhir) = server.get(&format!("/v1/fhir/Patient/{id}"), token).await;
        assert_eq!(status, 200, "{fhir}");
        let source_id = fhir["identifier"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["system"] == "https://github.com/synthetichealth/synthea")
            .and_then(|i| i["value"].as_str())
            .expect("the source system's identifier is kept")
            .to_owned();
        let source = &sources[&source_id];
        let official = source["name"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["use"] == "official")
            .unwrap();
        assert_eq!(fhir["name"][0]["family"], official["family"]);
        assert_eq!(fhir["name"][0]["given"], official["given"]);
        assert_eq!(fhir["birthDate"], source["birthDate"]);
        assert_eq!(fhir["gender"], source["gender"]);
        for key in ["line", "city", "state", "postalCode", "country"] {
            assert_eq!(fhir["address"][0][key], source["address"][0][key], "{key}");
        }
        let phone = |p: &Value| {
            p["telecom"]
                .as_array()
                .and_then(|t| t.iter().find(|t| t["system"] == "phone"))
                .map(|t| t["value"].clone())
        };
        assert_eq!(phone(&fhir), phone(source));
        // The SSN arrives intact (sealed at rest, read back by a role that may read it); a
        // licence or passport number has no encrypted field and is not kept; the others are,
        // and the clinic's own record number is added.
        let kinds: Vec<&str> = fhir["identifier"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["type"]["coding"][0]["code"].as_str())
            .collect();
        assert!(kinds.contains(&"MR"));
        assert!(!kinds.iter().any(|k| ["DL", "PPN"].contains(k)));
        let ssn = |p: &Value| {
            p["identifier"].as_array().and_then(|ids| {
                ids.iter()
                    .find(|i| i["system"] == "http://hl7.org/fhir/sid/us-ssn")
                    .map(|i| i["value"].clone())
            })
        };
        assert!(ssn(source).is_some());
        assert_eq!(ssn(&fhir), ssn(source));
        served.push_str(&fhir.to_string());
        served.push('\n');
    }
    let out = validate(&served);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "valid R4 Patient(s): 120"
    );
    // The validator is not a rubber stamp: a birth date that is no FHIR date fails.
    let mut broken: Value = serde_json::from_str(served.lines().next().unwrap()).unwrap();
    broken["birthDate"] = "last tuesday".into();
    assert!(!validate(&broken.to_string()).status.success());

    let audit_key = PublicKey::from_hex(&device.audit_public_key).unwrap();
    verify_all(&server.store, &audit_key, &[]).await.unwrap();
}

/// A line that is not a usable Patient is skipped by resource id (or file and line) and
/// reason; nothing of its content is printed.
#[tokio::test]
async fn unusable_lines_are_reported_by_id_and_reason_never_by_value() {
    let server = TestServer::start().await;
    let report = server.seed(0xA, "Clinic A").await;
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        r#"{"resourceType":"Patient","id":"no-name","birthDate":"1970-01-01"}"#,
        r#"{"resourceType":"Patient","id":"bad-date","name":[{"family":"CANARY-Fam"}],"birthDate":"1970-13-45"}"#,
        r#"CANARY-not-json"#,
        r#"{"resourceType":"Patient","id":"ok-1","name":[{"family":"Synthetic","given":["Ok"]}],"birthDate":"1970-01-01"}"#,
    ];
    std::fs::write(dir.path().join("Patient.ndjson"), lines.join("\n")).unwrap();
    let (text, stderr) = run_import(&server, report.clinic_id, dir.path(), &[]);
    assert!(text.contains("imported 1 patients"), "{text}");
    assert!(
        text.contains("skipped Patient/no-name: no family name"),
        "{text}"
    );
    assert!(
        text.contains("skipped Patient/bad-date: invalid birth_date"),
        "{text}"
    );
    assert!(
        text.contains("skipped Patient.ndjson:3: not a JSON resource"),
        "{text}"
    );
    let all = format!("{text}{stderr}");
    assert!(!all.contains("CANARY"), "{all}");
}
