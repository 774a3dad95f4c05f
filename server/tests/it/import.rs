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
    assert_eq!(
        first["by_resource"],
        json!([
            { "resource": "Patient", "imported": 120, "unchanged": 0 },
            { "resource": "Practitioner", "imported": 5, "unchanged": 0 },
        ]),
        "{first}"
    );
    assert_eq!(first["imported"], 125, "{first}");
    assert_eq!(first["skipped"], serde_json::json!([]));
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
        (0.into(), 125.into())
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

/// `PUT /v1/practitioner-directory/{id}` with `If-Match`: its status and body.
async fn link(
    server: &TestServer,
    token: &str,
    entry: &str,
    version: u64,
    user: Value,
) -> (u16, Value) {
    let resp = server
        .client()
        .put(format!("{}/v1/practitioner-directory/{entry}", server.url))
        .bearer_auth(token)
        .header("If-Match", format!("\"{version}\""))
        .json(&json!({ "user_id": user }))
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

/// A synthetic export of two patients, two practitioners, their coverages and
/// appointments, with the lines an import must refuse and why.
fn practice_export(dir: &Path) {
    let write = |name: &str, lines: &[Value]| {
        let text: Vec<String> = lines.iter().map(Value::to_string).collect();
        std::fs::write(dir.join(name), text.join("\n")).unwrap();
    };
    let patient = |id: &str, family: &str| {
        json!({ "resourceType": "Patient", "id": id, "gender": "female",
                "name": [{ "use": "official", "family": family, "given": ["Synthia"] }],
                "birthDate": "1980-02-03" })
    };
    write(
        "Patient.ndjson",
        &[patient("p1", "Importova"), patient("p2", "Migrata")],
    );
    write(
        "Organization.ndjson",
        &[json!({ "resourceType": "Organization", "id": "o1", "name": "Synthetic Payer" })],
    );
    let practitioner = |id: &str, family: &str, npi: &str| {
        json!({ "resourceType": "Practitioner", "id": id,
                "identifier": [{ "system": "http://hl7.org/fhir/sid/us-npi", "value": npi }],
                "name": [{ "family": family, "given": ["Dana"], "prefix": ["Dr."] }] })
    };
    write(
        "Practitioner.000.ndjson",
        &[
            practitioner("d1", "Oldsys", "9999990001"),
            practitioner("d2", "Elsewhere", "9999990002"),
        ],
    );
    let coverage = |id: &str, patient: &str, status: &str| {
        json!({ "resourceType": "Coverage", "id": id, "status": status,
                "subscriberId": format!("SYN-{id}"),
                "beneficiary": { "reference": format!("Patient/{patient}") },
                "relationship": { "coding": [{ "code": "self" }] },
                "period": { "start": "2025-01-01" },
                "payor": [{ "display": "Synthetic Mutual" }],
                "class": [{ "type": { "coding": [{ "code": "group" }] }, "value": "G-1" }] })
    };
    write(
        "Coverage.ndjson",
        &[
            coverage("c1", "p1", "active"),
            coverage("c2", "p2", "cancelled"),
            coverage("c3", "p-unknown", "active"),
        ],
    );
    let appointment = |id: &str, patient: &str, doctor: &str, status: &str, start: &str| {
        json!({ "resourceType": "Appointment", "id": id, "status": status,
                "appointmentType": { "coding": [{ "code": "FOLLOWUP" }] },
                "description": "Synthetic follow-up",
                "start": start, "minutesDuration": 20,
                "participant": [
                    { "actor": { "reference": format!("Patient/{patient}") }, "status": "accepted" },
                    { "actor": { "reference": format!("Practitioner/{doctor}") }, "status": "accepted" }
                ] })
    };
    write(
        "Appointment.ndjson",
        &[
            appointment("a1", "p1", "d1", "booked", "2027-03-01T09:00:00Z"),
            // Its length given by its end (in another offset), not in minutes.
            {
                let mut a2 = appointment("a2", "p2", "d1", "fulfilled", "2026-11-02T14:00:00Z");
                a2.as_object_mut().unwrap().remove("minutesDuration");
                a2["end"] = "2026-11-02T09:45:00-05:00".into();
                a2
            },
            // The same time as a1, for the same practitioner.
            appointment("a3", "p2", "d1", "booked", "2027-03-01T09:10:00Z"),
            appointment("a4", "p1", "d2", "booked", "2027-03-02T09:00:00Z"),
            appointment("a5", "p1", "d9", "booked", "2027-03-03T09:00:00Z"),
            appointment("a6", "p1", "d1", "proposed", "2027-03-04T09:00:00Z"),
            // Its practitioner named by NPI, as Synthea's exports name them.
            {
                let mut a7 = appointment("a7", "p2", "d1", "booked", "2027-03-05T09:00:00Z");
                a7["participant"][1]["actor"] = json!({
                    "reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999990001"
                });
                a7
            },
            {
                let mut a8 = appointment("a8", "p2", "d1", "booked", "2027-03-06T09:00:00Z");
                a8["participant"][1]["actor"] = json!({
                    "identifier": { "system": "http://hl7.org/fhir/sid/us-npi", "value": "9999999999" }
                });
                a8
            },
        ],
    );
}

/// The report's (imported, unchanged) of each resource type.
fn tallies(report: &Value) -> HashMap<String, (u64, u64)> {
    report["by_resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["resource"].as_str().unwrap().to_owned(),
                (
                    t["imported"].as_u64().unwrap(),
                    t["unchanged"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

fn skips(report: &Value) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["resource"].as_str().unwrap().to_owned(),
                s["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    all.sort();
    all
}

/// A practice's move: practitioners land in the clinic's directory (not as sign-ins),
/// coverages on their patients, and appointments once an admin has linked their
/// practitioner to the clinician's account: a later run imports them, and a third changes
/// nothing. Each record has its first version and `create` event, each link its version and
/// event, what cannot be taken is named with its reason, and every record reads back as
/// valid R4 through `$everything`.
#[tokio::test]
async fn practitioners_coverages_and_appointments_come_in_once_their_practitioner_is_linked() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login,
    } = server.signed_in(0xC, "admin").await;
    let admin = login.session_token.expose().to_owned();
    let dir = tempfile::tempdir().unwrap();
    practice_export(dir.path());
    let clinic = report.clinic_id;
    let users_before: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE clinic_id = $1")
        .bind(clinic.to_string())
        .fetch_one(&server.owner_pool().await)
        .await
        .unwrap();

    let (stdout, _) = run_import(&server, clinic, dir.path(), &["--json"]);
    let first: Value = serde_json::from_str(&stdout).unwrap();
    let counts = tallies(&first);
    assert_eq!(counts["Patient"], (2, 0), "{first}");
    assert_eq!(counts["Practitioner"], (2, 0), "{first}");
    assert_eq!(counts["Coverage"], (2, 0), "{first}");
    assert!(!counts.contains_key("Appointment"), "{first}");
    // The export's other files are named, not silently dropped.
    assert_eq!(first["not_imported"], json!([["Organization", 1]]));
    let unlinked = "practitioner not linked to an account";
    let s = |r: &str, why: &str| (r.to_owned(), why.to_owned());
    assert_eq!(
        skips(&first),
        vec![
            s("Appointment/a1", unlinked),
            s("Appointment/a2", unlinked),
            s("Appointment/a3", unlinked),
            s("Appointment/a4", unlinked),
            s("Appointment/a5", "practitioner not imported"),
            s("Appointment/a6", "status is a request, not a booking"),
            s("Appointment/a7", unlinked),
            s("Appointment/a8", "practitioner not imported"),
            s("Coverage/c3", "patient not imported"),
        ]
    );
    // The old system's practitioners are no sign-ins.
    let users_after: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE clinic_id = $1")
        .bind(clinic.to_string())
        .fetch_one(&server.owner_pool().await)
        .await
        .unwrap();
    assert_eq!(users_after, users_before);

    // The admin finds them in the directory and links one to the clinician's account.
    let (status, directory) = server.get("/v1/practitioner-directory", &admin).await;
    assert_eq!(status, 200, "{directory}");
    let entries = directory["entries"].as_array().unwrap();
    let names: Vec<_> = entries
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Dr. Dana Elsewhere", "Dr. Dana Oldsys"]);
    let d1 = entries
        .iter()
        .find(|e| e["source"] == "Practitioner/d1")
        .unwrap();
    let d2 = entries
        .iter()
        .find(|e| e["source"] == "Practitioner/d2")
        .unwrap();
    assert_eq!(
        (d1["npi"].as_str(), d1["version"].as_u64()),
        (Some("9999990001"), Some(1))
    );
    assert!(d1.get("user_id").is_none(), "{d1}");
    let (d1_id, d2_id) = (d1["id"].as_str().unwrap(), d2["id"].as_str().unwrap());
    let (_, users) = server.get("/v1/users", &admin).await;
    let user_id = |name: &str| {
        users["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == name)
            .map(|u| u["user_id"].clone())
            .unwrap()
    };
    let clinician = user_id("clinician");
    // Only an active clinician of the clinic stands for a practitioner.
    let (status, body) = link(&server, &admin, d1_id, 1, user_id("frontdesk")).await;
    assert_eq!((status, &body["field"]), (400, &json!("user_id")), "{body}");
    let (status, body) = link(&server, &admin, d1_id, 1, clinician.clone()).await;
    assert_eq!((status, &body["version"]), (200, &json!(2)), "{body}");
    // On a version before it, the link is refused, naming what changed.
    let (status, body) = link(&server, &admin, d1_id, 1, Value::Null).await;
    assert_eq!(
        (status, &body["fields"]),
        (409, &json!(["user_id"])),
        "{body}"
    );
    // One account stands for one entry.
    let (status, body) = link(&server, &admin, d2_id, 1, clinician.clone()).await;
    assert_eq!((status, &body["field"]), (409, &json!("user_id")), "{body}");
    // Directory entries are the admin's: the front desk neither reads nor links them.
    let front = device
        .login(&server, "frontdesk", password_of(&report, "frontdesk"))
        .await;
    let front_token = front.session_token.expose().to_owned();
    assert_eq!(
        server
            .get("/v1/practitioner-directory", &front_token)
            .await
            .0,
        403
    );
    assert_eq!(
        link(&server, &front_token, d2_id, 1, clinician.clone())
            .await
            .0,
        403
    );
    // Another clinic's admin does not find this clinic's entries.
    let other = server.signed_in(0xD, "admin").await;
    let other_admin = other.login.session_token.expose().to_owned();
    let (_, theirs) = server.get("/v1/practitioner-directory", &other_admin).await;
    assert_eq!(theirs["entries"], json!([]));
    assert_eq!(
        link(&server, &other_admin, d2_id, 1, Value::Null).await.0,
        404
    );

    // Again: what is now linked comes in; what was here is left as it is.
    let (stdout, _) = run_import(&server, clinic, dir.path(), &["--json"]);
    let second: Value = serde_json::from_str(&stdout).unwrap();
    let counts = tallies(&second);
    assert_eq!(counts["Patient"], (0, 2), "{second}");
    assert_eq!(counts["Practitioner"], (0, 2), "{second}");
    assert_eq!(counts["Coverage"], (0, 2), "{second}");
    assert_eq!(counts["Appointment"], (3, 0), "{second}");
    assert_eq!(
        skips(&second),
        vec![
            s("Appointment/a3", "the practitioner is booked then"),
            s("Appointment/a4", unlinked),
            s("Appointment/a5", "practitioner not imported"),
            s("Appointment/a6", "status is a request, not a booking"),
            s("Appointment/a8", "practitioner not imported"),
            s("Coverage/c3", "patient not imported"),
        ]
    );
    let (text, _) = run_import(&server, clinic, dir.path(), &[]);
    assert!(
        text.contains("imported 0 patients, 0 practitioners (into the directory), 0 coverages, 0 appointments; 9 already imported"),
        "{text}"
    );
    assert!(text.contains("then import again"), "{text}");

    // Each record has its first version and `create` event by the import; the link its own.
    let creates = server.events_of("create").await;
    let created = |kind: &str| {
        creates
            .iter()
            .filter(|e| e.resource_type == kind && e.route == "import")
            .count()
    };
    assert_eq!(
        ["Patient", "Practitioner", "Coverage", "Appointment"].map(created),
        [2, 2, 2, 3]
    );
    let links: Vec<_> = server
        .events_of("update")
        .await
        .into_iter()
        .filter(|e| e.resource_type == "Practitioner")
        .collect();
    assert_eq!(links.len(), 1);
    assert_eq!(
        (
            links[0].actor_user_id,
            links[0].patient_id,
            links[0].fields.clone()
        ),
        (login.user.user_id, None, vec!["user_id".to_owned()])
    );

    // The front desk finds them as written: the coverage on its patient, the appointments
    // on the clinician's schedule in their source status, and each as valid R4.
    let (_, found) = server.get("/v1/patients?q=importova", &front_token).await;
    let p1 = found["results"][0]["id"].as_str().unwrap().to_owned();
    let (status, bundle) = server
        .get(&format!("/v1/fhir/Patient/{p1}/$everything"), &front_token)
        .await;
    assert_eq!(status, 200, "{bundle}");
    let of_type = |kind: &str| -> Vec<Value> {
        bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"].clone())
            .filter(|r| r["resourceType"] == kind)
            .collect()
    };
    let coverages = of_type("Coverage");
    assert_eq!(coverages.len(), 1, "{bundle}");
    assert_eq!(coverages[0]["subscriberId"], "SYN-c1");
    assert_eq!(coverages[0]["payor"][0]["display"], "Synthetic Mutual");
    assert_eq!(coverages[0]["class"][0]["value"], "G-1");
    let appointments = of_type("Appointment");
    assert_eq!(appointments.len(), 1, "{bundle}");
    let a1 = &appointments[0];
    assert_eq!(
        (&a1["status"], &a1["minutesDuration"], &a1["description"]),
        (&json!("booked"), &json!(20), &json!("Synthetic follow-up"))
    );
    assert_eq!(a1["appointmentType"]["coding"][0]["code"], "FOLLOWUP");
    assert_eq!(
        a1["participant"][1]["actor"]["reference"],
        json!(format!("Practitioner/{}", clinician.as_str().unwrap()))
    );
    let out = validate(&bundle.to_string());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, found) = server.get("/v1/patients?q=migrata", &front_token).await;
    let p2 = found["results"][0]["id"].as_str().unwrap().to_owned();
    let (_, bundle) = server
        .get(&format!("/v1/fhir/Patient/{p2}/$everything"), &front_token)
        .await;
    let statuses: Vec<_> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["resource"]["status"].as_str())
        .collect();
    assert_eq!(
        statuses,
        ["cancelled", "fulfilled", "booked"],
        "coverage ended, visit done, the one booked by the practitioner's NPI ahead"
    );
    let visit = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "Appointment")
        .unwrap();
    assert_eq!(visit["minutesDuration"], 45, "from its start to its end");

    let audit_key = PublicKey::from_hex(&device.audit_public_key).unwrap();
    crate::harness::verify_trail(&server.store, &audit_key, &[])
        .await
        .unwrap();
}

/// The same through an admin's upload: one body of mixed lines, in any order, imported
/// patients first; the job reports each type.
#[tokio::test]
async fn an_uploaded_export_of_mixed_resources_imports_each_in_its_turn() {
    let server = TestServer::start().await;
    let SignedIn { login, .. } = server.signed_in(0x1C, "admin").await;
    let token = login.session_token.expose().to_owned();
    let dir = tempfile::tempdir().unwrap();
    practice_export(dir.path());
    // Appointments and coverages first, as an export may list them.
    let mut body = String::new();
    for file in [
        "Appointment.ndjson",
        "Coverage.ndjson",
        "Practitioner.000.ndjson",
        "Patient.ndjson",
    ] {
        body.push_str(&std::fs::read_to_string(dir.path().join(file)).unwrap());
        body.push('\n');
    }
    body.push_str("{\"resourceType\":\"Organization\",\"id\":\"o1\",\"name\":\"CANARY-Org\"}\n");
    // A second entry with d2's NPI, and an appointment naming that NPI: which is meant
    // cannot be told, so it is refused rather than guessed.
    body.push_str(
        &json!({ "resourceType": "Practitioner", "id": "d3", "name": [{ "family": "Twin" }],
                 "identifier": [{ "system": "http://hl7.org/fhir/sid/us-npi", "value": "9999990002" }] })
        .to_string(),
    );
    body.push('\n');
    body.push_str(
        &json!({ "resourceType": "Appointment", "id": "a9", "status": "booked",
                 "start": "2027-03-09T09:00:00Z", "minutesDuration": 20,
                 "participant": [
                     { "actor": { "reference": "Patient/p1" } },
                     { "actor": { "reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999990002" } }
                 ] })
        .to_string(),
    );
    body.push('\n');
    let (status, started) = post_import(&server, &token, &body).await;
    assert_eq!(status, 202, "{started}");
    let job = finished_job(&server, &token, started["id"].as_str().unwrap()).await;
    assert_eq!(
        job["by_resource"],
        json!([
            { "resource": "Patient", "imported": 2, "unchanged": 0 },
            { "resource": "Practitioner", "imported": 3, "unchanged": 0 },
            { "resource": "Coverage", "imported": 2, "unchanged": 0 },
        ]),
        "{job}"
    );
    assert_eq!(
        (&job["imported"], &job["done"]),
        (&json!(7), &json!(18)),
        "{job}"
    );
    let skipped = skips(&job);
    assert!(
        skipped.contains(&(
            "Appointment/a1".to_owned(),
            "practitioner not linked to an account".to_owned()
        )),
        "{job}"
    );
    assert!(
        skipped.contains(&("Patient/o1".to_owned(), "not a Patient resource".to_owned())),
        "{job}"
    );
    assert!(
        skipped.contains(&(
            "Appointment/a9".to_owned(),
            "practitioner's NPI is on more than one entry".to_owned()
        )),
        "{job}"
    );
    assert!(!job.to_string().contains("CANARY"), "{job}");
}
