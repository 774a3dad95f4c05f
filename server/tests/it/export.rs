//! Exports (CSV, verifiable JSON Lines, FHIR R4), the offline verifier, and the patient
//! access report, through the real API and CLI.

use std::process::Command;

use clinicdesk_protocol::audit::{Hash32, Recorder};
use clinicdesk_protocol::export::{
    ChainKey, ClinicKeys, EventDigest, ExportEnd, ExportLine, PatientAccessReport,
};
use clinicdesk_protocol::merkle::verify_inclusion;
use clinicdesk_protocol::wire::AppointmentList;
use clinicdesk_server::audit::verify_export::verify_export;
use serde_json::json;
use uuid::Uuid;

use crate::audit_log::{event, sign};
use crate::harness::{SignedIn, TestDevice, TestServer, cli, fhir_validate, password_of};

const FORMULA_AGENT: &str = "=HYPERLINK(\"http://example.invalid\")";

struct Trail {
    server: TestServer,
    device: TestDevice,
    admin_token: String,
    clinician_token: String,
    patient: Uuid,
}

/// A clinic whose trail holds a workstation chain and the server's own chain.
async fn trail() -> Trail {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login: clinician,
    } = server.signed_in(0xA, "clinician").await;
    let (_, body) = server
        .get("/v1/appointments", clinician.session_token.expose())
        .await;
    let list: AppointmentList = serde_json::from_value(body).unwrap();
    let patient = list.appointments[0].patient_id;
    let resp = server
        .client()
        .get(format!("{}/v1/patients/{patient}", server.url))
        .bearer_auth(clinician.session_token.expose())
        .header(reqwest::header::USER_AGENT, FORMULA_AGENT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut prev = Hash32::GENESIS;
    let mut events = Vec::new();
    for seq in 1..=5 {
        let mut e = event(&device, clinician.user.user_id, seq, prev);
        e.patient_id = Some(patient);
        let s = sign(&device, e);
        prev = s.event.hash();
        events.push(s);
    }
    let (status, _) = server
        .post(
            "/v1/audit/batches",
            None,
            json!({ "device_id": device.id, "events": events }),
        )
        .await;
    assert_eq!(status, 200);
    let admin = device
        .login(&server, "admin", password_of(&report, "admin"))
        .await;
    Trail {
        server,
        device,
        admin_token: admin.session_token.expose().to_owned(),
        clinician_token: clinician.session_token.expose().to_owned(),
        patient,
    }
}

async fn api_text(t: &Trail, path: &str) -> (u16, String) {
    let resp = t
        .server
        .client()
        .get(format!("{}{path}", t.server.url))
        .bearer_auth(&t.admin_token)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Whether an export of `exported` events holds every one of the `before` stored before it
/// was asked for: it streams while its own read is being recorded, so that event may be in
/// it as well (as may any event recorded while an export streams).
fn in_export(exported: u64, before: u64) -> bool {
    exported == before || exported == before + 1
}

async fn stored_events(t: &Trail) -> u64 {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(&t.server.owner_pool().await)
        .await
        .unwrap();
    n as u64
}

/// The keys as the verifier knows them independently: the device key it enrolled, the
/// server key it pinned at enrollment, and the server chain's id.
async fn trusted_keys(t: &Trail) -> ClinicKeys {
    let chain: String = sqlx::query_scalar("SELECT id FROM devices WHERE kind = 'server'")
        .fetch_one(&t.server.owner_pool().await)
        .await
        .unwrap();
    let mut chains = std::collections::BTreeMap::new();
    chains.insert(
        t.device.id,
        ChainKey {
            recorded_by: Recorder::Device,
            public_key: clinicdesk_protocol::audit::to_hex(t.device.key.verifying_key().as_bytes()),
        },
    );
    chains.insert(
        Uuid::parse_str(&chain).unwrap(),
        ChainKey {
            recorded_by: Recorder::Server,
            public_key: t.device.audit_public_key.clone(),
        },
    );
    ClinicKeys {
        clinic_id: t.device.clinic_id,
        server: t.device.audit_public_key.clone(),
        chains,
        rotations: Vec::new(),
    }
}

fn verify(text: &str, keys: Option<&ClinicKeys>) -> Result<u64, String> {
    verify_export(text.as_bytes(), keys)
        .map(|s| s.events)
        .map_err(|p| p.to_string())
}

#[tokio::test]
async fn a_jsonl_export_verifies_offline_and_any_change_is_named() {
    let t = trail().await;
    let before = stored_events(&t).await;
    let (status, text) = api_text(&t, "/v1/audit/export?format=jsonl").await;
    assert_eq!(status, 200);
    let keys = trusted_keys(&t).await;
    let total = verify(&text, Some(&keys)).unwrap();
    assert!(total > 5, "both chains are in the trail");
    assert!(in_export(total, before), "{total} of {before}");

    let lines: Vec<&str> = text.lines().collect();
    let rebuild = |ls: &[String]| ls.join("\n") + "\n";
    let owned: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();

    // An edited field: named by its line and event.
    let mut edited = owned.clone();
    let mut x: serde_json::Value = serde_json::from_str(&edited[2]).unwrap();
    x["event"]["event"]["resource_id"] = json!("someone-else");
    let id = x["event"]["event"]["id"].as_str().unwrap().to_owned();
    edited[2] = x.to_string();
    let err = verify(&rebuild(&edited), Some(&keys)).unwrap_err();
    assert!(err.starts_with("line 3") && err.contains(&id), "{err}");

    // A dropped, a duplicated and a swapped line, a lost end, a widened filter.
    let mut dropped = owned.clone();
    dropped.remove(3);
    let mut duplicated = owned.clone();
    duplicated.insert(3, owned[3].clone());
    let mut swapped = owned.clone();
    swapped.swap(2, 3);
    let truncated = owned[..owned.len() - 1].to_vec();
    let mut refiltered = owned.clone();
    let mut h: serde_json::Value = serde_json::from_str(&refiltered[0]).unwrap();
    h["header"]["filters"]["action"] = json!("view");
    refiltered[0] = h.to_string();
    for (name, ls) in [
        ("dropped", dropped),
        ("duplicated", duplicated),
        ("swapped", swapped),
        ("truncated", truncated),
        ("refiltered", refiltered),
    ] {
        assert!(
            verify(&rebuild(&ls), Some(&keys)).is_err(),
            "{name} went unnoticed"
        );
    }

    // Keys of another server prove nothing.
    let mut wrong = keys.clone();
    wrong.server = clinicdesk_protocol::audit::to_hex(&[9; 32]);
    assert!(
        verify(&text, Some(&wrong))
            .unwrap_err()
            .starts_with("line 1")
    );
    // Without trusted keys the file's own are used, and it still checks out.
    assert_eq!(verify(&text, None), Ok(total));

    // Filters narrow the export, and the narrowed file verifies on its own terms.
    let (_, one) = api_text(
        &t,
        &format!("/v1/audit/export?format=jsonl&device_id={}", t.device.id),
    )
    .await;
    assert_eq!(verify(&one, Some(&keys)), Ok(5));
    for l in one.lines().skip(1) {
        if let Ok(ExportLine::Event(e)) = serde_json::from_str::<ExportLine>(l) {
            assert_eq!(e.event.device_id, t.device.id);
        }
    }
}

/// The lines of `lines` (header first) with a new end line signed by `key`, as the holder
/// of the server's audit key could write it.
fn resigned(lines: &[String], key: &clinicdesk_server::audit::key::AuditKey) -> String {
    let mut digest = EventDigest::default();
    let mut events = 0u64;
    for l in &lines[1..] {
        if let Ok(ExportLine::Event(e)) = serde_json::from_str::<ExportLine>(l) {
            digest.push(&e.event.hash());
            events += 1;
        }
    }
    let digest = digest.finish();
    let end = ExportLine::End(ExportEnd {
        events,
        digest,
        signature: key.sign_hex(&ExportEnd::signed_bytes(
            lines[0].as_bytes(),
            events,
            &digest,
        )),
    });
    let mut out: Vec<String> = lines
        .iter()
        .filter(|l| {
            !matches!(
                serde_json::from_str::<ExportLine>(l),
                Ok(ExportLine::End(_))
            )
        })
        .cloned()
        .collect();
    out.push(serde_json::to_string(&end).unwrap());
    out.join("\n") + "\n"
}

/// The audit format promises that an unfiltered export holds every leaf of the signed log,
/// 0 to the checkpoint's size, and that nothing follows its signed end. Before,
/// `verify-export` took the end line's word for the first: whoever holds the server's key
/// could leave an event out, sign a new end line over the rest, and the file verified; and
/// it stopped reading at the end line, so whatever followed went unread.
#[tokio::test]
async fn an_unfiltered_export_must_hold_every_leaf_and_nothing_after_its_end() {
    let t = trail().await;
    let (status, text) = api_text(&t, "/v1/audit/export?format=jsonl").await;
    assert_eq!(status, 200);
    let keys = trusted_keys(&t).await;
    let total = verify(&text, Some(&keys)).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let key = clinicdesk_server::audit::key::AuditKey::load_or_create(t.server.dir.path()).unwrap();
    assert_eq!(
        verify(&resigned(&lines, &key), Some(&keys)),
        Ok(total),
        "the server's own key signs an end line that verifies"
    );
    let mut left_out = lines.clone();
    left_out.remove(2);
    let err = verify(&resigned(&left_out, &key), Some(&keys)).unwrap_err();
    assert!(err.contains("every leaf"), "{err}");

    let mut trailing = lines.clone();
    trailing.push(lines[2].clone());
    let err = verify(&(trailing.join("\n") + "\n"), Some(&keys)).unwrap_err();
    assert!(
        err.starts_with(&format!("line {}", lines.len() + 1)) && err.contains("follows"),
        "{err}"
    );

    // A filtered export holds what its filters select, not every leaf.
    let (_, one) = api_text(
        &t,
        &format!("/v1/audit/export?format=jsonl&device_id={}", t.device.id),
    )
    .await;
    assert_eq!(verify(&one, Some(&keys)), Ok(5));
}

#[tokio::test]
async fn the_cli_exports_and_verifies_and_refuses_a_tampered_file() {
    let t = trail().await;
    let bin = env!("CARGO_BIN_EXE_clinicdesk-server");
    let data_dir = t.server.dir.path();
    let out = cli(&t.server)
        .args(["audit", "export", "--format", "jsonl", "--data-dir"])
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("export.jsonl");
    std::fs::write(&file, &out.stdout).unwrap();
    let keys = cli(&t.server)
        .args(["audit", "keys", "--data-dir"])
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(keys.status.success());
    let keys_file = work.path().join("keys.json");
    std::fs::write(&keys_file, &keys.stdout).unwrap();
    let from_cli: ClinicKeys = serde_json::from_slice(&keys.stdout).unwrap();
    assert_eq!(
        from_cli,
        trusted_keys(&t).await,
        "`audit keys` prints the clinic's real keys"
    );

    let ok = Command::new(bin)
        .args(["audit", "verify-export", "--keys"])
        .arg(&keys_file)
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "export verified: {} event(s)",
            stored_events(&t).await
        )),
        "{stdout}"
    );

    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut x: serde_json::Value = serde_json::from_str(&lines[4]).unwrap();
    x["event"]["event"]["occurred_at_ms"] =
        json!(x["event"]["event"]["occurred_at_ms"].as_i64().unwrap() - 3_600_000);
    let id = x["event"]["event"]["id"].as_str().unwrap().to_owned();
    lines[4] = x.to_string();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let bad = Command::new(bin)
        .args(["audit", "verify-export", "--keys"])
        .arg(&keys_file)
        .arg(&file)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("line 5") && stderr.contains(&id),
        "{stderr}"
    );
}

#[tokio::test]
async fn csv_has_a_row_per_event_and_defuses_formulas() {
    let t = trail().await;
    let before = stored_events(&t).await;
    let (status, text) = api_text(&t, "/v1/audit/export?format=csv").await;
    assert_eq!(status, 200);
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        clinicdesk_server::audit::export::CSV_COLUMNS.to_vec()
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert!(in_export(rows.len() as u64, before));
    let ua = headers.iter().position(|h| h == "user_agent").unwrap();
    let agents: Vec<&str> = rows
        .iter()
        .map(|r| &r[ua])
        .filter(|a| !a.is_empty())
        .collect();
    assert!(
        agents.contains(&format!("'{FORMULA_AGENT}").as_str()),
        "{agents:?}"
    );
    assert!(agents.iter().all(|a| !a.starts_with('=')));
}

/// The FHIR export, validated by an independent implementation: the `fhir.resources`
/// package (R4B models) that `cargo xtask test` installs in its own virtualenv.
#[tokio::test]
async fn fhir_export_validates_as_r4_audit_events_with_an_independent_validator() {
    let t = trail().await;
    let before = stored_events(&t).await;
    let (status, text) = api_text(&t, "/v1/audit/export?format=fhir").await;
    assert_eq!(status, 200);
    let bundle: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entries = bundle["entry"].as_array().unwrap();
    assert!(in_export(entries.len() as u64, before));
    let server_event = entries
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["source"]["type"][0]["code"] == "4" && r["subtype"][0]["code"] == "view")
        .expect("a server-recorded view");
    assert_eq!(server_event["agent"][0]["network"]["address"], "127.0.0.1");
    assert_eq!(server_event["agent"][0]["requestor"], true);
    assert!(
        server_event["entity"][0]["what"]["reference"]
            .as_str()
            .unwrap()
            .starts_with("Patient/")
    );

    let validate = |json: &str| fhir_validate("fhir_validate.py", json);
    let out = validate(&text);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("valid R4 Bundle of {} AuditEvent(s)", entries.len())
    );
    // The validator is not a rubber stamp: a `recorded` that is no FHIR instant fails.
    let mut broken = bundle.clone();
    broken["entry"][0]["resource"]["recorded"] = json!("last tuesday");
    assert!(!validate(&broken.to_string()).status.success());
}

#[tokio::test]
async fn the_patient_access_report_lists_every_access_with_a_proof() {
    let mut t = trail().await;
    // 5 workstation views, the server's schedule line and chart view of this patient
    // (counted first: the report's own read is recorded after it is answered).
    let expected: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE patient_id = $1")
            .bind(t.patient.to_string())
            .fetch_one(&t.server.owner_pool().await)
            .await
            .unwrap();
    let (status, text) = api_text(&t, &format!("/v1/audit/patients/{}/report", t.patient)).await;
    assert_eq!(status, 200, "{text}");
    let report: PatientAccessReport = serde_json::from_str(&text).unwrap();
    let cp = &report.checkpoint.checkpoint;
    assert_eq!(report.accesses.len() as i64, expected);
    assert!(expected >= 7);
    for a in &report.accesses {
        assert_eq!(a.event.patient_id, Some(t.patient));
        assert!(a.actor_name.is_some() && a.device_name.is_some());
        verify_inclusion(
            &cp.root_hash,
            cp.tree_size,
            a.leaf_index,
            &a.event.hash(),
            &a.inclusion,
        )
        .unwrap();
    }
    let times: Vec<i64> = report
        .accesses
        .iter()
        .map(|a| a.event.occurred_at_ms)
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");

    // Only admins pull the trail: a clinician is refused, and so is no session at all.
    let report_path = format!("/v1/audit/patients/{}/report", t.patient);
    for (token, expected) in [
        (t.clinician_token.clone(), 403),
        ("not-a-token".to_owned(), 401),
    ] {
        let probe = Trail {
            admin_token: token,
            ..t
        };
        for path in ["/v1/audit/export?format=csv", report_path.as_str()] {
            let (status, _) = api_text(&probe, path).await;
            assert_eq!(status, expected, "{path}");
        }
        t = probe;
    }
}
