//! Bringing a clinic in from its old system: the 120 Synthea patients of a FHIR R4 Bulk
//! Data export arrive through the CLI with their names, birth dates, genders, addresses,
//! phones and (non-sensitive) identifiers intact, each with its first version and `create`
//! event; a second run changes nothing; and each comes back out of
//! `GET /v1/fhir/Patient/{id}` as a valid R4 Patient (checked by fhir.resources).

use std::collections::HashMap;
use std::path::Path;

use clinicdesk_server::audit::key::PublicKey;
use clinicdesk_server::time::Clock;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{SignedIn, TestServer, cli, fhir_validate, password_of};

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

    // Every patient, read back as FHIR (its `$everything` Bundle), carries what the source
    // said.
    let mut served = String::new();
    for event in &creates {
        let id = event.patient_id.unwrap();
        let (status, bundle) = server
            .get(&format!("/v1/fhir/Patient/{id}/$everything"), token)
            .await;
        assert_eq!(status, 200, "{bundle}");
        let (_, alone) = server.get(&format!("/v1/fhir/Patient/{id}"), token).await;
        let fhir = bundle["entry"][0]["resource"].clone();
        assert_eq!(fhir, alone, "the Bundle's Patient is the Patient read");
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
        served.push_str(&bundle.to_string());
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
        "valid R4: 120 Bundle, 120 Patient"
    );
    // The validator is not a rubber stamp: a birth date that is no FHIR date fails.
    let mut broken: Value = serde_json::from_str(served.lines().next().unwrap()).unwrap();
    broken["entry"][0]["resource"]["birthDate"] = "last tuesday".into();
    assert!(!validate(&broken.to_string()).status.success());

    let audit_key = PublicKey::from_hex(&device.audit_public_key).unwrap();
    crate::harness::verify_trail(&server.store, &audit_key, &[])
        .await
        .unwrap();
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

/// A seeded patient's `$everything`: the Patient, their coverage and appointments, valid R4,
/// each cut to the reader's field policy, and one disclosure event naming every field sent.
#[tokio::test]
async fn everything_bundles_a_patients_coverage_and_appointments_as_each_role_may_read() {
    use clinicdesk_protocol::policy::Role;
    let server = TestServer::start().await;
    let s = server.signed_in(0xE7, "frontdesk").await;
    let roles = crate::harness::every_role(&server, &s.report, &s.device).await;
    let token = |role: Role| roles.iter().find(|(r, _)| *r == role).unwrap().1.clone();
    // A patient on today's schedule (the seed books them, and gives them a coverage).
    let patient: String = sqlx::query_scalar(
        "SELECT patient_id FROM appointments WHERE clinic_id = $1 ORDER BY starts_at_ms LIMIT 1",
    )
    .bind(s.report.clinic_id.to_string())
    .fetch_one(&server.owner_pool().await)
    .await
    .unwrap();
    let path = format!("/v1/fhir/Patient/{patient}/$everything");
    let kinds = |bundle: &Value| -> Vec<String> {
        bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["resourceType"].as_str().unwrap().to_owned())
            .collect()
    };

    let (status, front) = server.get(&path, &token(Role::FrontDesk)).await;
    assert_eq!(status, 200, "{front}");
    let front_kinds = kinds(&front);
    assert_eq!(front_kinds[0], "Patient");
    assert!(
        front_kinds.contains(&"Coverage".to_owned()),
        "{front_kinds:?}"
    );
    assert!(
        front_kinds.contains(&"Appointment".to_owned()),
        "{front_kinds:?}"
    );
    let appointment = front["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Appointment")
        .unwrap();
    assert_eq!(
        appointment["resource"]["participant"][0]["actor"]["reference"],
        format!("Patient/{patient}")
    );
    // Billing reads demographics and coverage, not the schedule or the emergency contact.
    let (status, billing) = server.get(&path, &token(Role::Billing)).await;
    assert_eq!(status, 200);
    assert!(!kinds(&billing).contains(&"Appointment".to_owned()));
    assert!(kinds(&billing).contains(&"Coverage".to_owned()));
    assert!(billing["entry"][0]["resource"].get("contact").is_none());
    let (status, _) = server.get(&path, &token(Role::Admin)).await;
    assert_eq!(status, 403, "admins see no patient fields");

    let out = validate(&format!("{front}\n{billing}\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        counts.contains("2 Bundle") && counts.contains("2 Patient"),
        "{counts}"
    );

    // One view of the patient per read, naming the fields of every resource sent.
    let views: Vec<_> = server
        .events_of("view")
        .await
        .into_iter()
        .filter(|e| e.route.ends_with("$everything"))
        .collect();
    // The admin's refusal is recorded too, as denied.
    assert_eq!(views.len(), 3);
    assert_eq!(
        views[2].outcome,
        clinicdesk_protocol::audit::Outcome::Denied
    );
    let fields = &views[0].fields;
    assert!(fields.contains(&"name".to_owned()), "{fields:?}");
    assert!(fields.contains(&"Coverage.payer".to_owned()), "{fields:?}");
    assert!(
        fields.contains(&"Appointment.start".to_owned()),
        "{fields:?}"
    );
    assert!(
        !views[1]
            .fields
            .iter()
            .any(|f| f.starts_with("Appointment."))
    );
}

/// `POST /v1/imports` with `body` as the admin `token`: (status, answer).
async fn post_import(server: &TestServer, token: &str, body: &str) -> (u16, Value) {
    let resp = server
        .client()
        .post(format!("{}/v1/imports", server.url))
        .bearer_auth(token)
        .header("content-type", "application/fhir+ndjson")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The job `id` once it has ended, read from `server` (at most about 30 s).
async fn finished_job(server: &TestServer, token: &str, id: &str) -> Value {
    for _ in 0..600 {
        let (status, job) = server.get(&format!("/v1/imports/{id}"), token).await;
        assert_eq!(status, 200, "{job}");
        if job["status"] != "running" {
            return job;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the import job did not end");
}

/// An admin brings the clinic's patients in through the API, as the CLI would: the job
/// answers at once (202) and any instance reports its progress; each record's `create`
/// event names the admin; a line that cannot be taken is named by its id and reason only;
/// a second upload changes nothing; no other role may start or read an import, and another
/// clinic's admin cannot find it.
#[tokio::test]
async fn an_admin_imports_through_the_api_and_any_instance_follows_the_job() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login,
    } = server.signed_in(0x1A, "admin").await;
    let token = login.session_token.expose().to_owned();
    let mut ndjson = std::fs::read_to_string(format!("{EXPORT}/Patient.000.ndjson")).unwrap();
    ndjson.push_str(
        "{\"resourceType\":\"Patient\",\"id\":\"bad-date\",\"name\":[{\"family\":\"CANARY-Fam\"}],\
         \"birthDate\":\"1970-13-45\"}\n",
    );

    let (status, started) = post_import(&server, &token, &ndjson).await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["total"], 121, "{started}");
    let id = started["id"].as_str().unwrap().to_owned();
    let other = server.another_instance().await;
    let job = finished_job(&other, &token, &id).await;
    assert_eq!(
        (
            &job["status"],
            &job["done"],
            &job["imported"],
            &job["unchanged"]
        ),
        (&json!("done"), &json!(121), &json!(120), &json!(0)),
        "{job}"
    );
    assert_eq!(
        job["skipped"],
        json!([{ "resource": "Patient/bad-date", "reason": "invalid birth_date" }])
    );
    assert!(!job.to_string().contains("CANARY"), "{job}");
    let creates: Vec<_> = server
        .events_of("create")
        .await
        .into_iter()
        .filter(|e| e.resource_type == "Patient" && e.route == "import")
        .collect();
    assert_eq!(creates.len(), 120);
    assert!(
        creates
            .iter()
            .all(|e| e.actor_user_id == login.user.user_id)
    );

    // Again: nothing changes.
    let (_, again) = post_import(&server, &token, &ndjson).await;
    let again = finished_job(&server, &token, again["id"].as_str().unwrap()).await;
    assert_eq!(
        (&again["imported"], &again["unchanged"]),
        (&json!(0), &json!(120))
    );

    // Only admins import; another clinic's admin does not find this clinic's job.
    let front = device
        .login(&server, "frontdesk", password_of(&report, "frontdesk"))
        .await;
    let front_token = front.session_token.expose().to_owned();
    assert_eq!(post_import(&server, &front_token, &ndjson).await.0, 403);
    let (status, _) = server.get(&format!("/v1/imports/{id}"), &front_token).await;
    assert_eq!(status, 403);
    let b = server.signed_in(0x1B, "admin").await;
    let (status, _) = server
        .get(&format!("/v1/imports/{id}"), b.login.session_token.expose())
        .await;
    assert_eq!(status, 404);
    // Every imported patient has its record, in the admin's clinic.
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM patients WHERE clinic_id = $1")
        .bind(report.clinic_id.to_string())
        .fetch_one(&server.owner_pool().await)
        .await
        .unwrap();
    assert_eq!(stored, 5 + 120, "the seed's five and the 120 imported");
}

/// A job whose server instance stopped (it stores no more progress) is shown as stalled
/// after five minutes, not as running for ever.
#[tokio::test]
async fn a_job_that_stops_storing_progress_is_shown_stalled() {
    let server = TestServer::start().await;
    let s = server.signed_in(0x1C, "admin").await;
    let token = s.login.session_token.expose().to_owned();
    // A job as an instance left it when it died: running, part done.
    let id = Uuid::now_v7();
    let now = server.clock.now_ms();
    sqlx::query(
        "INSERT INTO import_jobs (id, clinic_id, started_by, status, total, done, report,
             started_at_ms, updated_at_ms)
         VALUES ($1, $2, $3, 'running', 400, 200,
             '{\"imported\":200,\"unchanged\":0,\"skipped\":[],\"not_imported\":[]}', $4, $4)",
    )
    .bind(id.to_string())
    .bind(s.report.clinic_id.to_string())
    .bind(s.login.user.user_id.to_string())
    .bind(now)
    .execute(&server.owner_pool().await)
    .await
    .unwrap();
    let path = format!("/v1/imports/{id}");
    let (_, job) = server.get(&path, &token).await;
    assert_eq!(
        (&job["status"], &job["done"]),
        (&json!("running"), &json!(200))
    );
    server.clock.advance_ms(4 * 60_000);
    assert_eq!(server.get(&path, &token).await.1["status"], "running");
    server.clock.advance_ms(2 * 60_000);
    assert_eq!(server.get(&path, &token).await.1["status"], "stalled");
}
