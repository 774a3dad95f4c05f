//! Sensitive fields through the real server: a patient's SSN is sealed before it reaches the
//! database (read there directly, it is nowhere in plaintext), found by a keyed blind index,
//! read back only by the roles the policy table allows, and kept readable and encrypted
//! across `keys rotate --reencrypt` killed half-way and resumed, and `keys retire`.

use clinicdesk_protocol::policy::Role;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{TestServer, cli, cli_ok, every_role, run_cli};

/// Synthetic SSNs: the 999 area is never issued.
fn ssn(i: u32) -> String {
    format!("999-41-{:04}", 2000 + i)
}

fn registration(i: u32, ssn: &str) -> Value {
    json!({ "fields": {
        "name": { "given": format!("Ssnia{i}"), "family": "Sealwell" },
        "birth_date": "1979-03-14",
        "phone": format!("555-02{i:02}"),
        "ssn": ssn,
    }, "confirm_new_person": true })
}

async fn register(server: &TestServer, token: &str, body: Value) -> Uuid {
    let (status, answer) = server.post("/v1/patients", Some(token), body).await;
    assert_eq!(status, 201, "{answer}");
    answer["id"].as_str().unwrap().parse().unwrap()
}

/// The patient's SSN as `token` reads it (`None`: the field is absent).
async fn ssn_read(server: &TestServer, token: &str, id: Uuid) -> Option<String> {
    let (status, body) = server
        .get(&format!("/v1/patients/{id}/record"), token)
        .await;
    assert_eq!(status, 200, "{body}");
    body["fields"]
        .get("ssn")
        .map(|v| v.as_str().unwrap().to_owned())
}

async fn search_ids(server: &TestServer, token: &str, q: &str) -> (u16, Vec<String>) {
    let (status, body) = server.get(&format!("/v1/patients?q={q}"), token).await;
    let ids = body["results"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|p| p["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    (status, ids)
}

/// Every byte the database holds, as text, as someone with its key reads it: the SQLite
/// store decrypted whole, or (PostgreSQL) every row of every table as the schema owner
/// reads it.
async fn everything_stored(server: &TestServer) -> String {
    match &server.database {
        None => String::from_utf8_lossy(&server.decrypted_image().await).into_owned(),
        Some(_) => {
            let owner = server.owner_pool().await;
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables
                 WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
            )
            .fetch_all(&owner)
            .await
            .unwrap();
            assert!(tables.contains(&"sealed_values".to_owned()));
            let mut all = String::new();
            for t in tables {
                let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT t::text FROM \"{t}\" t"
                )))
                .fetch_all(&owner)
                .await
                .unwrap();
                all.extend(rows);
            }
            all
        }
    }
}

/// No form of any of `values` is stored anywhere.
async fn assert_nowhere_in_plaintext(server: &TestServer, values: &[String]) {
    let stored = everything_stored(server).await;
    assert!(
        stored.len() > 10_000,
        "read the store: {} bytes",
        stored.len()
    );
    for v in values {
        let bare = v.replace('-', "");
        assert!(
            !stored.contains(v.as_str()),
            "an SSN is stored in plaintext"
        );
        assert!(
            !stored.contains(&bare),
            "an SSN is stored in plaintext (bare)"
        );
    }
}

#[tokio::test]
async fn an_ssn_is_sealed_at_rest_found_by_blind_index_and_read_only_by_roles_allowed() {
    let server = TestServer::start().await;
    let s = server.signed_in(0x5E1, "frontdesk").await;
    let roles = every_role(&server, &s.report, &s.device).await;
    let token = |role: Role| roles.iter().find(|(r, _)| *r == role).unwrap().1.clone();
    let front = token(Role::FrontDesk);

    // Typed without dashes: stored and shown in the one form.
    let id = register(&server, &front, registration(1, "999412001")).await;
    let other = register(&server, &front, registration(2, &ssn(2))).await;
    assert_eq!(
        ssn_read(&server, &front, id).await.as_deref(),
        Some("999-41-2001")
    );
    assert_eq!(
        ssn_read(&server, &token(Role::Billing), id)
            .await
            .as_deref(),
        Some("999-41-2001")
    );
    assert_eq!(ssn_read(&server, &token(Role::Clinician), id).await, None);

    // Exact match, whole or by the last four; nothing for a number not on file.
    assert_eq!(
        search_ids(&server, &front, "999-41-2001").await,
        (200, vec![id.to_string()])
    );
    assert_eq!(
        search_ids(&server, &front, "XXX-XX-2002").await,
        (200, vec![other.to_string()])
    );
    assert_eq!(
        search_ids(&server, &token(Role::Billing), "***-**-2001").await,
        (200, vec![id.to_string()])
    );
    assert_eq!(
        search_ids(&server, &front, "999-41-2099").await,
        (200, vec![])
    );
    // A match by SSN tells the searcher whose number it is: its disclosure names the field
    // (the query itself is never recorded).
    let by_ssn: Vec<_> = server
        .events_of("view")
        .await
        .into_iter()
        .filter(|e| e.route == "/v1/patients" && e.patient_id == Some(other))
        .collect();
    assert_eq!(by_ssn.len(), 1);
    assert!(
        by_ssn[0].fields.contains(&"ssn".to_owned()),
        "{:?}",
        by_ssn[0].fields
    );
    // A role that may not read it may not look a patient up by it either.
    let (status, body) = server
        .get("/v1/patients?q=999-41-2001", &token(Role::Clinician))
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (403, Some("ssn")),
        "{body}"
    );

    // A change seals the new number; the history shows each version's own.
    let (status, body) = server
        .patch(
            &format!("/v1/patients/{id}"),
            &front,
            1,
            json!({ "fields": { "ssn": ssn(3) } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, history) = server
        .get(&format!("/v1/patients/{id}/history"), &front)
        .await;
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions[0]["fields"]["ssn"], "999-41-2001");
    assert_eq!(versions[1]["fields"]["ssn"], ssn(3));
    assert_eq!(versions[1]["changed"], json!(["ssn"]));
    let (_, history) = server
        .get(
            &format!("/v1/patients/{id}/history"),
            &token(Role::Clinician),
        )
        .await;
    assert!(history["versions"][1]["fields"].get("ssn").is_none());
    assert_eq!(history["versions"][1]["changed"], json!([]));
    assert_eq!(
        search_ids(&server, &front, "999-41-2001").await,
        (200, vec![])
    );
    assert_eq!(
        search_ids(&server, &front, &ssn(3)).await,
        (200, vec![id.to_string()])
    );
    // The same number again is no change.
    let (status, body) = server
        .patch(
            &format!("/v1/patients/{id}"),
            &front,
            2,
            json!({ "fields": { "ssn": "999 41 2003" } }),
        )
        .await;
    assert_eq!((status, body["version"].as_u64()), (200, Some(2)), "{body}");

    // The FHIR read carries it as the us-ssn identifier, for a role that may read it.
    let (_, fhir) = server
        .get(&format!("/v1/fhir/Patient/{id}"), &token(Role::Billing))
        .await;
    assert!(fhir["identifier"].to_string().contains(&ssn(3)), "{fhir}");
    let (_, fhir) = server
        .get(&format!("/v1/fhir/Patient/{id}"), &token(Role::Clinician))
        .await;
    assert!(!fhir.to_string().contains("999-41"));

    // Malformed: refused by field name, never echoed.
    let (status, body) = server
        .post("/v1/patients", Some(&front), registration(4, "12-3456"))
        .await;
    assert_eq!((status, body["field"].as_str()), (400, Some("ssn")));
    assert!(!body.to_string().contains("12-3456"));

    assert_nowhere_in_plaintext(&server, &[ssn(1), ssn(2), ssn(3)]).await;
    cli_ok(&server, &["audit", "verify"]);
}

/// How many of the clinic's sealed values are under each data key, by key id.
async fn values_by_key(server: &TestServer) -> Vec<(i64, i64)> {
    sqlx::query_as("SELECT key_id, COUNT(*) FROM sealed_values GROUP BY key_id ORDER BY key_id")
        .fetch_all(&server.owner_pool().await)
        .await
        .unwrap()
}

/// A front desk's session in a new clinic, and twelve patients it registered with SSNs.
async fn twelve_with_ssns(server: &TestServer, clinic: u128) -> (String, Vec<(Uuid, String)>) {
    let s = server.signed_in(clinic, "frontdesk").await;
    let front = s.login.session_token.expose().to_owned();
    let mut patients = Vec::new();
    for i in 0..12 {
        patients.push((
            register(server, &front, registration(i, &ssn(i))).await,
            ssn(i),
        ));
    }
    (front, patients)
}

/// Runs `keys rotate --reencrypt` in batches of two, aborted (as by a kill: nothing flushed,
/// the open transaction lost) just before batch `n` commits.
fn rotate_killed_before_batch(server: &TestServer, n: u32) {
    let out = cli(server)
        .args([
            "keys",
            "rotate",
            "--reencrypt",
            "--batch-size",
            "2",
            "--data-dir",
        ])
        .arg(server.dir.path())
        .env("CLINICDESK_FAULT_ABORT_AT_BATCH", n.to_string())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the fault point was reached");
}

#[tokio::test]
async fn a_rotation_killed_half_way_resumes_and_every_value_stays_readable_and_sealed() {
    let server = TestServer::start().await;
    let (front, mut patients) = twelve_with_ssns(&server, 0x5E2).await;
    assert_eq!(values_by_key(&server).await, vec![(1, 12)]);

    // Killed (aborted, as by a kill) just before its third batch of two commits.
    rotate_killed_before_batch(&server, 3);
    assert_eq!(
        values_by_key(&server).await,
        vec![(1, 8), (2, 4)],
        "two batches moved, the third lost with its transaction"
    );
    // Half-way, the server serves: every value opens, new ones go under the new key.
    for (id, want) in &patients {
        assert_eq!(
            ssn_read(&server, &front, *id).await.as_deref(),
            Some(want.as_str())
        );
    }
    patients.push((
        register(&server, &front, registration(20, &ssn(20))).await,
        ssn(20),
    ));
    assert_eq!(values_by_key(&server).await, vec![(1, 8), (2, 5)]);
    // An old version cannot be retired while the rotation is unfinished.
    let out = run_cli(&server, &["keys", "retire", "--version", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has not finished"));

    // Run again: it finishes that rotation (it does not start another).
    let report: Value =
        serde_json::from_slice(&cli_ok(&server, &["keys", "rotate", "--json"])).unwrap();
    assert_eq!(report["resumed"], true, "{report}");
    assert_eq!(report["kek_version"], 2);
    assert_eq!(report["values_reencrypted"], 8);
    assert_eq!(report["data_keys_destroyed"], 1);
    assert_eq!(values_by_key(&server).await, vec![(2, 13)]);
    let kept: Vec<(i64, i64)> =
        sqlx::query_as("SELECT key_id, kek_version FROM clinic_keys WHERE purpose = 'data'")
            .fetch_all(&server.owner_pool().await)
            .await
            .unwrap();
    assert_eq!(kept, vec![(2, 2)], "the old data key is destroyed");
    // The trail says the clinic's data and index keys changed, though the run that made the
    // data key was killed: each key and its event commit together. (Nothing was left to
    // rewrap: the old keys are destroyed, the new ones made under v2.)
    assert_eq!(
        key_changes(&server).await,
        vec![vec!["data_key".to_owned()], vec!["index_key".to_owned()]]
    );

    let status: Value =
        serde_json::from_slice(&cli_ok(&server, &["keys", "status", "--json"])).unwrap();
    assert_eq!(status["current"], 2);
    assert_eq!(status["versions"], json!([[1, 0], [2, 2]]), "{status}");
    // The embedded store's database key moved with them (PostgreSQL has none).
    let embedded = server.database.is_none();
    assert_eq!(
        status["store_key"],
        if embedded { json!(2) } else { json!(null) }
    );
    cli_ok(&server, &["keys", "retire", "--version", "1"]);
    assert!(!server.key_dir.path().join("kek-000001.key").exists());
    let out = run_cli(&server, &["keys", "retire", "--version", "2"]);
    assert!(!out.status.success(), "the current version stays");

    for (id, want) in &patients {
        assert_eq!(
            ssn_read(&server, &front, *id).await.as_deref(),
            Some(want.as_str())
        );
    }
    let values: Vec<String> = patients.iter().map(|(_, v)| v.clone()).collect();
    assert_nowhere_in_plaintext(&server, &values).await;
    // A plain rotation after: every clinic key rewrapped under v3, no value touched.
    let report: Value =
        serde_json::from_slice(&cli_ok(&server, &["keys", "rotate", "--json"])).unwrap();
    assert_eq!(
        (
            &report["kek_version"],
            &report["keys_rewrapped"],
            &report["values_reencrypted"]
        ),
        (&json!(3), &json!(2), &json!(0))
    );
    assert_eq!(report["store_key_rewrapped"], json!(embedded));
    // v2 wraps nothing now: retired, and the store still opens (the verify below) under v3.
    cli_ok(&server, &["keys", "retire", "--version", "2"]);
    assert_eq!(
        search_ids(&server, &front, &ssn(20)).await,
        (200, vec![patients[12].0.to_string()])
    );
    cli_ok(&server, &["audit", "verify"]);
}

/// The fields of each `update` of `ClinicKeys` in the trail, oldest first: which of the
/// clinic's keys each run changed.
async fn key_changes(server: &TestServer) -> Vec<Vec<String>> {
    server
        .events_of("update")
        .await
        .into_iter()
        .filter(|e| e.resource_type == "ClinicKeys")
        .map(|e| e.fields)
        .collect()
}

/// How many patients' SSN indexes each index key made, by key id; and every index held.
async fn indexes_by_key(server: &TestServer) -> (Vec<(i64, i64)>, Vec<String>) {
    let owner = server.owner_pool().await;
    let counts = sqlx::query_as(
        "SELECT ssn_index_key, COUNT(*) FROM patients WHERE ssn_index <> ''
         GROUP BY ssn_index_key ORDER BY ssn_index_key",
    )
    .fetch_all(&owner)
    .await
    .unwrap();
    let held = sqlx::query_scalar(
        "SELECT ssn_index FROM patients WHERE ssn_index <> ''
         UNION ALL SELECT ssn_last4_index FROM patients WHERE ssn_last4_index <> ''",
    )
    .fetch_all(&owner)
    .await
    .unwrap();
    (counts, held)
}

/// Every patient is found by their whole SSN and by its last four digits.
async fn assert_each_found_by_ssn(server: &TestServer, token: &str, patients: &[(Uuid, String)]) {
    for (id, ssn) in patients {
        let (status, ids) = search_ids(server, token, ssn).await;
        assert_eq!((status, ids), (200, vec![id.to_string()]), "by whole SSN");
        let last4 = format!("XXX-XX-{}", &ssn[7..]);
        let (status, ids) = search_ids(server, token, &last4).await;
        assert_eq!((status, ids), (200, vec![id.to_string()]), "by last four");
    }
}

/// The blind-index key is rotated with the data key: `keys rotate --reencrypt` remakes every
/// SSN index under a new index key in batches, killed half-way it resumes, and searches find
/// every patient throughout (looking under both keys while the indexes are split), so an
/// index key that may have leaked can be replaced while the clinic works.
#[tokio::test]
async fn a_blind_index_rotation_killed_half_way_finds_every_patient_throughout_and_resumes() {
    let server = TestServer::start().await;
    let (front, mut patients) = twelve_with_ssns(&server, 0x5E3).await;
    let (counts, before) = indexes_by_key(&server).await;
    assert_eq!(counts, vec![(1, 12)]);
    assert_each_found_by_ssn(&server, &front, &patients).await;

    // Batches of two: six move the values to the new data key, then two remake indexes
    // under the new index key; the ninth is lost with its transaction.
    rotate_killed_before_batch(&server, 9);
    assert_eq!(values_by_key(&server).await, vec![(2, 12)]);
    assert_eq!(indexes_by_key(&server).await.0, vec![(1, 8), (2, 4)]);

    // Half-way, every patient is found, a new one is indexed under the new key, and the
    // indexes, split across two keys, each agree with their SSN.
    assert_each_found_by_ssn(&server, &front, &patients).await;
    patients.push((
        register(&server, &front, registration(21, &ssn(21))).await,
        ssn(21),
    ));
    assert_eq!(indexes_by_key(&server).await.0, vec![(1, 8), (2, 5)]);
    assert_each_found_by_ssn(&server, &front, &patients[12..]).await;
    cli_ok(&server, &["audit", "verify"]);

    let report: Value =
        serde_json::from_slice(&cli_ok(&server, &["keys", "rotate", "--json"])).unwrap();
    assert_eq!(report["resumed"], true, "{report}");
    assert_eq!(
        (
            &report["values_reencrypted"],
            &report["indexes_remade"],
            &report["index_keys_destroyed"]
        ),
        (&json!(0), &json!(8), &json!(1)),
        "{report}"
    );
    let (counts, after) = indexes_by_key(&server).await;
    assert_eq!(counts, vec![(2, 13)]);
    assert!(
        before.iter().all(|old| !after.contains(old)),
        "no index of the old key is left"
    );
    let index_keys: Vec<i64> =
        sqlx::query_scalar("SELECT key_id FROM clinic_keys WHERE purpose = 'index'")
            .fetch_all(&server.owner_pool().await)
            .await
            .unwrap();
    assert_eq!(index_keys, vec![2], "the old index key is destroyed");
    assert_each_found_by_ssn(&server, &front, &patients).await;
    // The clinic's trail says which keys changed, each as the killed run made it.
    assert_eq!(
        key_changes(&server).await,
        vec![vec!["data_key".to_owned()], vec!["index_key".to_owned()]]
    );
    cli_ok(&server, &["audit", "verify"]);
    let values: Vec<String> = patients.iter().map(|(_, v)| v.clone()).collect();
    assert_nowhere_in_plaintext(&server, &values).await;
}

/// The columns searches read beside a patient's content (the name, phone and record-number
/// columns, the SSN's blind indexes) are checked against it by `audit verify`, like the
/// audit trail's own columns: an insider who points an SSN's index at another patient, or
/// renames a patient in the search columns, or swaps a sealed value, is named.
#[tokio::test]
async fn audit_verify_names_a_patients_columns_edited_behind_the_servers_back() {
    let server = TestServer::start().await;
    let s = server.signed_in(0x5E3, "frontdesk").await;
    let front = s.login.session_token.expose().to_owned();
    let a = register(&server, &front, registration(1, &ssn(1))).await;
    let b = register(&server, &front, registration(2, &ssn(2))).await;
    let c = register(&server, &front, registration(3, &ssn(3))).await;
    cli_ok(&server, &["audit", "verify"]);

    let owner = server.owner_pool().await;
    if server.database.is_none() {
        // As an insider with the file: the triggers do not guard these tables anyway.
        sqlx::query("PRAGMA foreign_keys = OFF")
            .execute(&owner)
            .await
            .unwrap();
    }
    // A's SSN index now says B's number: a search for B's SSN would find A.
    sqlx::query(
        "UPDATE patients SET ssn_index = (SELECT ssn_index FROM patients WHERE id = $1)
         WHERE id = $2",
    )
    .bind(b.to_string())
    .bind(a.to_string())
    .execute(&owner)
    .await
    .unwrap();
    // B is renamed in the columns the schedule and searches read.
    sqlx::query("UPDATE patients SET name = 'Someone Else', family_key = 'else' WHERE id = $1")
        .bind(b.to_string())
        .execute(&owner)
        .await
        .unwrap();
    // C's sealed SSN is replaced by B's ciphertext (another value's row: it does not open).
    sqlx::query(
        "UPDATE sealed_values SET sealed = (
             SELECT v.sealed FROM sealed_values v JOIN patients p
               ON p.record LIKE '%' || v.id || '%' WHERE p.id = $1)
         WHERE $2 LIKE '%' || id || '%'",
    )
    .bind(b.to_string())
    .bind(
        sqlx::query_scalar::<_, String>("SELECT record FROM patients WHERE id = $1")
            .bind(c.to_string())
            .fetch_one(&owner)
            .await
            .unwrap(),
    )
    .execute(&owner)
    .await
    .unwrap();

    let out = run_cli(&server, &["audit", "verify"]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "verify passed an edited store");
    for (patient, column) in [(a, "ssn_index"), (b, "name"), (b, "family_key"), (c, "ssn")] {
        assert!(
            said.lines()
                .any(|l| l.contains(&patient.to_string()) && l.contains(column)),
            "{patient} {column} not named: {said}"
        );
    }
    assert!(!said.contains("999-41"), "no value is printed: {said}");
}
