//! Patient records through the real server: the front desk registers a patient and changes
//! them; every change is a new version with its audit event (the fields changed, the
//! content hashes before and after) in the same transaction; a stale `If-Match` is a
//! conflict naming what changed; a likely duplicate is refused until confirmed; every role
//! reads and writes exactly the fields the policy table gives it; and `audit verify` finds
//! history changed behind the server's back.

use clinicdesk_protocol::audit::{AuditEvent, Hash32};
use clinicdesk_protocol::policy::fields::{Resource, field_access};
use clinicdesk_protocol::policy::{Role, allows};
use clinicdesk_protocol::wire::{PatientFields, PatientHistory, PatientRecord};
use clinicdesk_server::audit::key::PublicKey;
use clinicdesk_server::audit::verify::{Location, Problem, VerifyError};
use clinicdesk_server::store::Backend;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{SignedIn, TestServer, every_role, password_of};

fn registration() -> Value {
    json!({ "fields": {
        "name": { "given": "Wren", "family": "Synthetica" },
        "birth_date": "1984-07-19",
        "gender": "female",
        "phone": "555-0142",
        "email": "wren@example.invalid",
        "address": { "line": ["12 Nowhere Row"], "city": "Testford", "state": "ZZ",
                     "postal_code": "00012", "country": "US" },
        "language": "en",
        "emergency_contact": { "name": "Kit Synthetica", "relationship": "sibling",
                               "phone": "555-0143" }
    }})
}

/// `PATCH /v1/patients/{id}` based on `version`: the status, the `ETag`, the body.
async fn patch(
    server: &TestServer,
    token: &str,
    id: Uuid,
    version: &str,
    body: Value,
) -> (u16, Option<String>, Value) {
    let resp = server
        .client()
        .patch(format!("{}/v1/patients/{id}", server.url))
        .bearer_auth(token)
        .header("If-Match", version)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let etag = resp
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, etag, resp.json().await.unwrap_or(Value::Null))
}

async fn register(server: &TestServer, token: &str, body: Value) -> Uuid {
    let (status, answer) = server.post("/v1/patients", Some(token), body).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["version"], 1);
    answer["id"].as_str().unwrap().parse().unwrap()
}

async fn record(server: &TestServer, token: &str, id: Uuid) -> PatientRecord {
    let (status, body) = server
        .get(&format!("/v1/patients/{id}/record"), token)
        .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).unwrap()
}

/// The stored content of each version of the patient, oldest first.
async fn stored_versions(server: &TestServer, id: Uuid) -> Vec<String> {
    sqlx::query_scalar("SELECT body FROM record_versions WHERE record_id = $1 ORDER BY version")
        .bind(id.to_string())
        .fetch_all(&server.owner_pool().await)
        .await
        .unwrap()
}

fn sha(body: &str) -> Hash32 {
    Hash32::of_canonical(body.as_bytes())
}

async fn changes_of(server: &TestServer, id: Uuid) -> Vec<AuditEvent> {
    let mut events = server.events_of("create").await;
    events.extend(server.events_of("update").await);
    events.retain(|e| e.resource_type == "Patient" && e.patient_id == Some(id));
    events
}

#[tokio::test]
async fn a_registered_patient_is_changed_in_versions_each_with_its_audit_event() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login,
    } = server.signed_in(0xA, "frontdesk").await;
    let token = login.session_token.expose();
    let id = register(&server, token, registration()).await;

    let first = record(&server, token, id).await;
    assert_eq!(first.version, 1);
    let name = first.fields.name.clone().unwrap();
    assert_eq!(
        (name.given.as_str(), name.family.as_str()),
        ("Wren", "Synthetica")
    );
    let mrn = first.fields.mrn.clone().unwrap();
    assert!(
        mrn.len() == 8 && mrn.chars().all(|c| c.is_ascii_digit()),
        "assigned: {mrn:?}"
    );
    assert_eq!(first.fields.active, Some(true));
    // The chart shows the registered name.
    let (status, chart) = server.get(&format!("/v1/patients/{id}"), token).await;
    assert_eq!(
        (status, chart["name"].as_str()),
        (200, Some("Wren Synthetica"))
    );

    let change = json!({ "fields": { "phone": "555-0150",
        "address": { "line": ["14 Nowhere Row"], "city": "Testford", "state": "ZZ",
                     "postal_code": "00014", "country": "US" } },
        "reason": "moved next door" });
    let (status, etag, body) = patch(&server, token, id, "\"1\"", change).await;
    assert_eq!((status, etag.as_deref()), (200, Some("\"2\"")), "{body}");

    // A change based on version 1 now is stale: refused with what changed since.
    let late = json!({ "fields": { "email": "w.s@example.invalid" } });
    let (status, _, body) = patch(&server, token, id, "\"1\"", late.clone()).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "conflict");
    assert_eq!(body["current_version"], 2);
    assert_eq!(body["fields"], json!(["phone", "address"]));
    assert_eq!(
        record(&server, token, id).await.fields.email.as_deref(),
        Some("wren@example.invalid")
    );
    // Based on the current version, it goes through; the same values again store nothing.
    let (status, etag, _) = patch(&server, token, id, "\"2\"", late.clone()).await;
    assert_eq!((status, etag.as_deref()), (200, Some("\"3\"")));
    let (status, etag, _) = patch(&server, token, id, "\"3\"", late).await;
    assert_eq!((status, etag.as_deref()), (200, Some("\"3\"")));
    // No version named: refused by the header, nothing stored.
    let resp = server
        .client()
        .patch(format!("{}/v1/patients/{id}", server.url))
        .bearer_auth(token)
        .json(&json!({ "fields": { "language": "es" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);

    // The history: every version, who and what, with the values as they were.
    let (status, body) = server
        .get(&format!("/v1/patients/{id}/history"), token)
        .await;
    assert_eq!(status, 200, "{body}");
    let history: PatientHistory = serde_json::from_value(body).unwrap();
    let versions: Vec<(u64, Vec<String>)> = history
        .versions
        .iter()
        .map(|v| (v.version, v.changed.clone()))
        .collect();
    assert_eq!(versions[0].1, PatientFields::NAMES);
    assert_eq!(
        versions[1..],
        [
            (2, vec!["phone".to_owned(), "address".to_owned()]),
            (3, vec!["email".to_owned()])
        ]
    );
    assert_eq!(history.versions[1].reason.expose(), "moved next door");
    assert_eq!(
        history.versions[0].fields.phone.as_deref(),
        Some("555-0142")
    );
    assert_eq!(
        history.versions[1].fields.phone.as_deref(),
        Some("555-0150")
    );
    assert!(
        history
            .versions
            .iter()
            .all(|v| v.actor_user_id == login.user.user_id
                && v.actor_role == Role::FrontDesk
                && v.device_id == Some(device.id))
    );

    // Each change's event names the fields and commits to the stored content around it.
    let bodies = stored_versions(&server, id).await;
    let events = changes_of(&server, id).await;
    let summary: Vec<_> = events
        .iter()
        .map(|e| {
            let c = e.change.expect("a change event carries its hashes");
            (
                e.action.as_str(),
                e.fields.len(),
                c.version,
                c.before,
                c.after,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "create",
                PatientFields::NAMES.len(),
                1,
                None,
                sha(&bodies[0])
            ),
            ("update", 2, 2, Some(sha(&bodies[0])), sha(&bodies[1])),
            ("update", 1, 3, Some(sha(&bodies[1])), sha(&bodies[2])),
        ]
    );
    // The values stay in the history: no event carries one.
    for e in &events {
        let json = serde_json::to_string(e).unwrap();
        assert!(
            !json.contains("555-01") && !json.contains("Nowhere"),
            "{json}"
        );
    }
    // The patient's access report shows each change with the fields it changed.
    let admin = device
        .login(&server, "admin", password_of(&report, "admin"))
        .await;
    let (status, body) = server
        .get(
            &format!("/v1/audit/patients/{id}/report"),
            admin.session_token.expose(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let changes: Vec<(String, Value)> = body["accesses"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["event"]["action"] == "update")
        .map(|a| {
            (
                a["event"]["fields"].to_string(),
                a["event"]["change"]["version"].clone(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            (r#"["email"]"#.to_owned(), json!(3)),
            (r#"["phone","address"]"#.to_owned(), json!(2)),
        ],
        "newest first"
    );
    let audit_key = PublicKey::from_hex(&device.audit_public_key).unwrap();
    crate::harness::verify_trail(&server.store, &audit_key, &[])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_likely_duplicate_is_refused_with_its_candidates_until_confirmed() {
    let server = TestServer::start().await;
    let SignedIn { login, .. } = server.signed_in(0xA, "frontdesk").await;
    let token = login.session_token.expose();
    let first = register(&server, token, registration()).await;

    // The same walk-in again, typed in another case: refused, naming the first.
    let mut again = registration();
    again["fields"]["name"]["family"] = json!("SYNTHETICA");
    again["fields"]["phone"] = json!("555-0999");
    let (status, body) = server
        .post("/v1/patients", Some(token), again.clone())
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("possible_duplicate"))
    );
    assert_eq!(body["candidates"], json!([first.to_string()]));
    // Another name and birth date but the same phone: refused too.
    let mut same_phone = registration();
    same_phone["fields"]["name"]["given"] = json!("Rowan");
    same_phone["fields"]["birth_date"] = json!("2001-02-03");
    let (status, body) = server.post("/v1/patients", Some(token), same_phone).await;
    assert_eq!(
        (status, body["candidates"].clone()),
        (409, json!([first.to_string()]))
    );
    // Nothing was stored by either refusal.
    assert_eq!(changes_of(&server, first).await.len(), 1);
    // But each answer told the front desk that this patient exists: a disclosure, in the
    // trail like a search's, by the same user.
    let shown: Vec<AuditEvent> = server
        .events_of("view")
        .await
        .into_iter()
        .filter(|e| e.patient_id == Some(first) && e.route == "/v1/patients")
        .collect();
    assert_eq!(shown.len(), 2, "one per possible_duplicate answer");
    assert!(shown.iter().all(|e| e.actor_user_id == login.user.user_id));

    // The user checked: a different person. Registered, with a record number of its own.
    again["confirm_new_person"] = json!(true);
    let second = register(&server, token, again).await;
    assert_ne!(second, first);
    let mrns = (
        record(&server, token, first).await.fields.mrn,
        record(&server, token, second).await.fields.mrn,
    );
    assert_ne!(mrns.0, mrns.1);
    // A record number already in use is a conflict on that field.
    let mut taken = registration();
    taken["fields"]["name"]["given"] = json!("Ash");
    taken["fields"]["phone"] = json!("555-0777");
    taken["fields"]["mrn"] = json!(mrns.0.unwrap());
    taken["confirm_new_person"] = json!(true);
    let (status, body) = server.post("/v1/patients", Some(token), taken).await;
    assert_eq!((status, body["field"].as_str()), (409, Some("mrn")));
}

#[tokio::test]
async fn bad_input_is_refused_by_field_and_nothing_is_stored() {
    let server = TestServer::start().await;
    let SignedIn { login, .. } = server.signed_in(0xA, "frontdesk").await;
    let token = login.session_token.expose();
    let cases = [
        ("birth_date", json!("1984-02-30")),
        ("birth_date", json!("2999-01-01")),
        ("phone", json!("call me maybe")),
        ("email", json!("no-at-sign")),
        ("language", json!("en; DROP")),
        ("ssn", json!("000-00-000")),
    ];
    for (field, value) in cases {
        let mut body = registration();
        body["fields"][field] = value;
        let (status, answer) = server.post("/v1/patients", Some(token), body).await;
        assert_eq!(
            (status, answer["field"].as_str()),
            (400, Some(field)),
            "{answer}"
        );
    }
    let mut nameless = registration();
    nameless["fields"].as_object_mut().unwrap().remove("name");
    let (status, answer) = server.post("/v1/patients", Some(token), nameless).await;
    assert_eq!((status, answer["field"].as_str()), (400, Some("name")));
    // A field the table does not know.
    let mut unknown = registration();
    unknown["fields"]["passport"] = json!("X0000000");
    let (status, answer) = server.post("/v1/patients", Some(token), unknown).await;
    assert_eq!(status, 400, "{answer}");
    assert!(!answer.to_string().contains("X0000"), "{answer}");
    assert!(
        server
            .events_of("create")
            .await
            .iter()
            .all(|e| e.resource_type != "Patient")
    );
}

/// Every role reads exactly the fields the table lets it read (absent, not null, beyond
/// them), on every read route of the record; writes are allowed exactly where the table
/// says read-and-write.
#[tokio::test]
async fn each_role_reads_and_writes_exactly_the_fields_the_table_gives_it() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login,
    } = server.signed_in(0xA, "frontdesk").await;
    let front = login.session_token.expose().to_owned();
    let id = register(&server, &front, registration()).await;
    let sessions = every_role(&server, &report, &device).await;

    for (role, token) in &sessions {
        let table: Vec<&str> = PatientFields::NAMES
            .iter()
            .copied()
            .filter(|f| field_access(*role, Resource::Patient, f).reads())
            .collect();
        let routes = [
            format!("/v1/patients/{id}/record"),
            format!("/v1/patients/{id}/history"),
        ];
        for path in routes {
            let (status, body) = server.get(&path, token).await;
            if !allows(*role, clinicdesk_protocol::Permission::ReadDemographics) {
                assert_eq!(status, 403, "{role:?} {path}");
                assert!(
                    table.is_empty(),
                    "{role:?} is refused fields the table gives it"
                );
                continue;
            }
            assert_eq!(status, 200, "{role:?} {path}: {body}");
            let fields = if path.ends_with("/record") {
                body["fields"].clone()
            } else {
                body["versions"][0]["fields"].clone()
            };
            let keys: Vec<&str> = fields
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            let mut want = table.clone();
            want.sort_unstable();
            let mut got = keys.clone();
            got.sort_unstable();
            assert_eq!(got, want, "{role:?} {path}");
        }
        // The chart's registration fields are within the table too.
        let (status, chart) = server.get(&format!("/v1/patients/{id}"), token).await;
        if status == 200 {
            for key in ["name", "birth_date", "mrn", "phone"] {
                assert!(
                    chart.get(key).is_some() == table.contains(&key),
                    "{role:?} {key}"
                );
            }
        }
    }

    // Writes: each field alone, by each role, allowed exactly where the table says so.
    let values = [
        ("mrn", json!("X-1")),
        (
            "identifiers",
            json!([{ "system": "urn:example", "value": "1", "kind": "" }]),
        ),
        ("ssn", json!("999-55-0101")),
        (
            "name",
            json!({ "given": "Wren", "family": "Synthetica-Vale" }),
        ),
        ("birth_date", json!("1984-07-20")),
        ("gender", json!("other")),
        ("phone", json!("555-0160")),
        ("email", json!("wsv@example.invalid")),
        (
            "address",
            json!({ "line": ["1 Elsewhere"], "city": "Testford" }),
        ),
        ("language", json!("es")),
        (
            "emergency_contact",
            json!({ "name": "Kit", "relationship": "sibling", "phone": "555" }),
        ),
        ("active", json!(false)),
    ];
    assert_eq!(values.clone().map(|(f, _)| f), PatientFields::NAMES);
    for (role, token) in &sessions {
        for (field, value) in &values {
            let version = record(&server, &front, id).await.version;
            let (status, _, body) = patch(
                &server,
                token,
                id,
                &format!("\"{version}\""),
                json!({ "fields": { *field: value } }),
            )
            .await;
            if field_access(*role, Resource::Patient, field).writes() {
                assert_eq!(status, 200, "{role:?} {field}: {body}");
            } else {
                assert_eq!(
                    (status, body["code"].as_str()),
                    (403, Some("forbidden")),
                    "{role:?} {field}"
                );
            }
        }
    }
}

/// The history is checked against the trail: a version's content edited, a version
/// removed, or the current content changed behind the server's back is named by verify.
#[tokio::test]
async fn history_changed_behind_the_servers_back_is_named_by_verify() {
    let server = TestServer::start().await;
    let SignedIn { device, login, .. } = server.signed_in(0xA, "frontdesk").await;
    let token = login.session_token.expose();
    let id = register(&server, token, registration()).await;
    let (status, _, _) = patch(
        &server,
        token,
        id,
        "\"1\"",
        json!({ "fields": { "phone": "555-0151" } }),
    )
    .await;
    assert_eq!(status, 200);
    let audit_key = PublicKey::from_hex(&device.audit_public_key).unwrap();
    crate::harness::verify_trail(&server.store, &audit_key, &[])
        .await
        .unwrap();

    let owner = server.owner_pool().await;
    if server.store.backend() == Backend::Sqlite {
        for drop in [
            "DROP TRIGGER record_versions_no_update",
            "DROP TRIGGER record_versions_no_delete",
        ] {
            sqlx::query(drop).execute(&owner).await.unwrap();
        }
    }
    let run = |sql: &'static str| {
        let owner = owner.clone();
        async move {
            sqlx::query(sql)
                .bind(id.to_string())
                .execute(&owner)
                .await
                .unwrap();
        }
    };
    let findings = || async {
        match crate::harness::verify_trail(&server.store, &audit_key, &[]).await {
            Err(VerifyError::Tampered(found)) => crate::tamper::named(&found),
            other => panic!("went unnoticed: {:?}", other.map(|r| r.events)),
        }
    };
    let version = |v: i64| Location::Version {
        resource_type: "Patient".into(),
        record_id: id.to_string(),
        version: v,
    };

    // The first version's phone rewritten in the history.
    run("UPDATE record_versions SET body = replace(body, '555-0142', '555-0000') WHERE record_id = $1 AND version = 1").await;
    assert_eq!(findings().await, [(version(1), Problem::VersionContent)]);

    // The current content rewritten (the history left alone).
    run("UPDATE record_versions SET body = replace(body, '555-0000', '555-0142') WHERE record_id = $1 AND version = 1").await;
    run("UPDATE patients SET record = replace(record, '555-0151', '555-0000') WHERE id = $1").await;
    let current = Location::Record {
        resource_type: "Patient".into(),
        record_id: id.to_string(),
    };
    assert_eq!(
        findings().await,
        [(current.clone(), Problem::CurrentMismatch)]
    );

    // The latest version removed: its event names the loss, and the record is no longer
    // its latest version.
    run("UPDATE patients SET record = replace(record, '555-0000', '555-0151') WHERE id = $1").await;
    run("DELETE FROM record_versions WHERE record_id = $1 AND version = 2").await;
    let found = findings().await;
    assert!(
        matches!(found.as_slice(), [(Location::Event { .. }, Problem::VersionMissing), (c, Problem::CurrentMismatch)] if *c == current),
        "{found:?}"
    );
}

/// The history is append-only to the server, exactly like the trail: SQLite's triggers and
/// PostgreSQL's grants refuse the application role any change or removal of a version.
#[tokio::test]
async fn stored_versions_cannot_be_changed_or_deleted() {
    let server = TestServer::start().await;
    let SignedIn { login, .. } = server.signed_in(0xA, "frontdesk").await;
    let id = register(&server, login.session_token.expose(), registration()).await;
    let app = server.app_role_pool().await;
    let refusal = match server.store.backend() {
        Backend::Sqlite => "append-only",
        Backend::Postgres => "permission denied",
    };
    for attack in [
        "UPDATE record_versions SET body = '{}'",
        "UPDATE record_versions SET version = version + 1",
        "DELETE FROM record_versions",
    ] {
        let refused = sqlx::query(attack).execute(&app).await.unwrap_err();
        assert!(refused.to_string().contains(refusal), "{attack}: {refused}");
    }
    assert_eq!(stored_versions(&server, id).await.len(), 1);
}

/// `GET /v1/patients?q=` on a page: the matches' ids in order, and the next offset.
async fn search(server: &TestServer, token: &str, query: &str) -> (Vec<Uuid>, Value) {
    let (status, body) = server.get(&format!("/v1/patients?{query}"), token).await;
    assert_eq!(status, 200, "{query}: {body}");
    let ids = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().parse().unwrap())
        .collect();
    (ids, body)
}

/// The front desk finds patients clinic-wide as they type: by the start of a family or
/// given name (or both), a birth date, or the start of a record or phone number. Each
/// patient a search returns is a disclosure in the trail, with the fields it showed; the
/// query itself never is.
#[tokio::test]
async fn an_as_you_type_search_finds_patients_and_records_each_one_it_shows() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login,
    } = server.signed_in(0xA, "frontdesk").await;
    let token = login.session_token.expose();
    let wren = register(&server, token, registration()).await;
    let mut other = registration();
    other["fields"]["name"] = json!({ "given": "Rowan", "family": "Synthwood" });
    other["fields"]["birth_date"] = json!("1990-03-04");
    other["fields"]["phone"] = json!("555-0177");
    let rowan = register(&server, token, other).await;
    let wren_mrn = record(&server, token, wren).await.fields.mrn.unwrap();

    let by = |q: &'static str| search(&server, token, q);
    assert_eq!(by("q=syn").await.0, [wren, rowan], "family names in order");
    assert_eq!(by("q=SYNTHW").await.0, [rowan], "case does not matter");
    assert_eq!(by("q=wren%20synth").await.0, [wren], "given then family");
    assert_eq!(by("q=synth%20wr").await.0, [wren], "family then given");
    assert_eq!(by("q=ro").await.0, [rowan], "a given name alone");
    assert_eq!(by("q=1990-03-04").await.0, [rowan]);
    assert_eq!(
        by("q=555-017").await.0,
        [rowan],
        "the start of a phone number"
    );
    let (found, _) = search(&server, token, &format!("q={wren_mrn}")).await;
    assert_eq!(found, [wren]);
    assert!(by("q=zzz").await.0.is_empty());

    // Pages: one at a time, the next offset until the last.
    let (first, page) = by("q=syn&limit=1").await;
    assert_eq!((first, page["next_offset"].clone()), (vec![wren], json!(1)));
    let (second, page) = by("q=syn&limit=1&offset=1").await;
    assert_eq!(second, [rowan]);
    assert!(page.get("next_offset").is_none(), "{page}");
    for bad in [
        "q=",
        "q=%20",
        "q=syn&limit=0",
        "q=syn&limit=51",
        "q=a%20b%20c",
    ] {
        let (status, body) = server.get(&format!("/v1/patients?{bad}"), token).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }

    // What a result shows: the search's fields, no more.
    let (_, page) = by("q=wren").await;
    let mut keys: Vec<&str> = page["results"][0]["fields"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["active", "birth_date", "mrn", "name", "phone"]);

    // Each shown patient is one event of the search route; no event holds the query.
    let views: Vec<AuditEvent> = server
        .events_of("view")
        .await
        .into_iter()
        .filter(|e| e.route == "/v1/patients")
        .collect();
    let about = |id: Uuid| views.iter().filter(|e| e.patient_id == Some(id)).count();
    // Wren: syn, wren synth, synth wr, the record number, the first page, wren. Rowan: syn,
    // SYNTHW, ro, the birth date, the phone, the second page.
    assert_eq!((about(wren), about(rowan)), (6, 6));
    assert!(views.iter().all(|e| e.actor_user_id == login.user.user_id));
    for e in &views {
        let json = serde_json::to_string(e).unwrap();
        assert!(!json.to_lowercase().contains("syn"), "{json}");
    }

    // Admins see no patients; another clinic's front desk finds none of these.
    let sessions = every_role(&server, &report, &device).await;
    let (_, admin) = sessions.iter().find(|(r, _)| *r == Role::Admin).unwrap();
    assert_eq!(server.get("/v1/patients?q=syn", admin).await.0, 403);
    let other_clinic = server.signed_in(0xB, "frontdesk").await;
    let (found, _) = search(&server, other_clinic.login.session_token.expose(), "q=syn").await;
    assert!(found.is_empty());
}

/// A phone number is one number however it was typed: a search by its digits, or by any
/// way of writing its start, finds the patient, and a registration with the same number
/// written otherwise is a possible duplicate. Before, the phone was compared as typed:
/// "5550104477" and "555.010.4477" found nothing of "(555) 010-4477", and the same walk-in
/// registered twice with the number written two ways made two charts.
#[tokio::test]
async fn a_phone_number_is_compared_by_its_digits_however_it_was_typed() {
    let server = TestServer::start().await;
    let SignedIn { login, .. } = server.signed_in(0xA, "frontdesk").await;
    let token = login.session_token.expose();
    let mut first = registration();
    first["fields"]["phone"] = json!("(555) 010-4477");
    let id = register(&server, token, first).await;
    for typed in [
        "5550104477",
        "555-010",
        "(555)010",
        "555.010.4477",
        "+5550104",
    ] {
        let query = format!("q={}", urlencode(typed));
        let (ids, body) = search(&server, token, &query).await;
        assert_eq!(ids, vec![id], "{typed}: {body}");
    }
    // As the chart shows it: as typed.
    assert_eq!(
        record(&server, token, id).await.fields.phone.as_deref(),
        Some("(555) 010-4477")
    );
    // The same number written otherwise, by another name and birth date: a possible
    // duplicate of the first.
    let mut again = registration();
    again["fields"]["name"]["given"] = json!("Rowan");
    again["fields"]["birth_date"] = json!("2001-02-03");
    again["fields"]["phone"] = json!("555.010.4477");
    let (status, body) = server.post("/v1/patients", Some(token), again).await;
    assert_eq!(
        (status, body["candidates"].clone()),
        (409, json!([id.to_string()])),
        "{body}"
    );
    // Another number is not.
    let (ids, _) = search(&server, token, "q=5550104478").await;
    assert!(ids.is_empty());
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'-' | b'.' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// `method path` with an `Idempotency-Key` (and `If-Match` for a change): status and body.
async fn keyed(
    server: &TestServer,
    token: &str,
    method: reqwest::Method,
    path: &str,
    key: &str,
    if_match: Option<u64>,
    body: Value,
) -> (u16, Value) {
    let mut rb = server
        .client()
        .request(method, format!("{}{path}", server.url))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&body);
    if let Some(v) = if_match {
        rb = rb.header("If-Match", format!("\"{v}\""));
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_change_sent_again_is_answered_with_what_it_stored_not_applied_twice() {
    // A workstation's queue sends a change again when it never heard the answer (the
    // network dropped, the server was killed): the second send must find the first.
    let server = TestServer::start().await;
    let SignedIn { report, login, .. } = server.signed_in(0xA, "frontdesk").await;
    let token = login.session_token.expose();
    let (post, patch) = (reqwest::Method::POST, reqwest::Method::PATCH);

    // A registration made offline names its patient; sent twice, it is one patient.
    let patient = Uuid::new_v4();
    let (k_register, k_update, k_book) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut body = registration();
    body["id"] = json!(patient);
    for _ in 0..2 {
        let (status, answer) = keyed(
            &server,
            token,
            post.clone(),
            "/v1/patients",
            &k_register.to_string(),
            None,
            body.clone(),
        )
        .await;
        assert_eq!(status, 201, "{answer}");
        assert_eq!(
            (answer["id"].clone(), answer["version"].clone()),
            (json!(patient), json!(1))
        );
    }
    // Not refused as its own possible duplicate, and stored once.
    let named: i64 = sqlx::query_scalar("SELECT count(*) FROM patients WHERE name = $1")
        .bind("Wren Synthetica")
        .fetch_one(&server.owner_pool().await)
        .await
        .unwrap();
    assert_eq!(named, 1);

    // A change sent twice based on version 1: the second is answered version 2, not a
    // conflict, and stores nothing.
    let phone = json!({ "fields": { "phone": "555-0177" } });
    let path = format!("/v1/patients/{patient}");
    for _ in 0..2 {
        let (status, answer) = keyed(
            &server,
            token,
            patch.clone(),
            &path,
            &k_update.to_string(),
            Some(1),
            phone.clone(),
        )
        .await;
        assert_eq!(
            (status, answer["version"].clone()),
            (200, json!(2)),
            "{answer}"
        );
    }
    assert_eq!(stored_versions(&server, patient).await.len(), 2);

    // A booking made offline for that patient, sent twice: one appointment.
    let clinician: String = sqlx::query_scalar(
        "SELECT id FROM users WHERE clinic_id = $1 AND role = 'clinician' LIMIT 1",
    )
    .bind(report.clinic_id.to_string())
    .fetch_one(&server.owner_pool().await)
    .await
    .unwrap();
    let appointment = Uuid::new_v4();
    let booking = json!({ "id": appointment, "fields": { "patient_id": patient,
        "practitioner_id": clinician, "start": "2026-11-25T15:00:00Z", "duration_mins": 20 } });
    for _ in 0..2 {
        let (status, answer) = keyed(
            &server,
            token,
            post.clone(),
            "/v1/appointments",
            &k_book.to_string(),
            None,
            booking.clone(),
        )
        .await;
        assert_eq!(
            (status, answer["id"].clone()),
            (201, json!(appointment)),
            "{answer}"
        );
    }
    let booked: i64 = sqlx::query_scalar("SELECT count(*) FROM appointments WHERE patient_id = $1")
        .bind(patient.to_string())
        .fetch_one(&server.owner_pool().await)
        .await
        .unwrap();
    assert_eq!(booked, 1);
    let creates = server
        .events_of("create")
        .await
        .into_iter()
        .filter(|e| e.patient_id == Some(patient))
        .count();
    assert_eq!(
        creates, 2,
        "one create event each for the patient and the booking"
    );

    // The key of a booking is not a key for a patient change; an id already on file is
    // not a new patient's; a key that is no UUID is refused by the header.
    let (status, answer) = keyed(
        &server,
        token,
        patch.clone(),
        &path,
        &k_book.to_string(),
        Some(2),
        phone.clone(),
    )
    .await;
    assert_eq!(
        (status, answer["field"].as_str()),
        (409, Some("Idempotency-Key"))
    );
    let (status, answer) = keyed(
        &server,
        token,
        post.clone(),
        "/v1/patients",
        &Uuid::new_v4().to_string(),
        None,
        json!({ "id": patient, "fields": { "name": { "given": "Other", "family": "Person" },
                "birth_date": "1990-01-01" } }),
    )
    .await;
    assert_eq!(
        (status, answer["field"].as_str()),
        (409, Some("id")),
        "{answer}"
    );
    let (status, answer) = keyed(&server, token, patch, &path, "not-a-uuid", Some(2), phone).await;
    assert_eq!(
        (status, answer["field"].as_str()),
        (400, Some("Idempotency-Key"))
    );
}

/// A workstation chooses the id of a patient or booking it makes offline. One that already
/// belongs to another clinic's record is refused like one of its own clinic's (`conflict`
/// on `id`), not a server error, and the other clinic's record is untouched. Before, the
/// insert hit the primary key and answered 500.
#[tokio::test]
async fn an_id_taken_in_another_clinic_is_a_conflict_on_id() {
    let server = TestServer::start().await;
    let SignedIn { report: a, .. } = server.signed_in(0xA, "frontdesk").await;
    let SignedIn {
        report: b, login, ..
    } = server.signed_in(0xB, "frontdesk").await;
    let token = login.session_token.expose();
    let pool = server.owner_pool().await;
    let one = |sql: &'static str, clinic: Uuid| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(sql)
                .bind(clinic.to_string())
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let their_patient = one(
        "SELECT id FROM patients WHERE clinic_id = $1 LIMIT 1",
        a.clinic_id,
    )
    .await;
    let their_appointment = one(
        "SELECT id FROM appointments WHERE clinic_id = $1 LIMIT 1",
        a.clinic_id,
    )
    .await;
    let ours = one(
        "SELECT id FROM patients WHERE clinic_id = $1 LIMIT 1",
        b.clinic_id,
    )
    .await;
    let clinician = one(
        "SELECT id FROM users WHERE clinic_id = $1 AND role = 'clinician' LIMIT 1",
        b.clinic_id,
    )
    .await;

    let mut body = registration();
    body["id"] = json!(their_patient);
    let (status, answer) = server.post("/v1/patients", Some(token), body).await;
    assert_eq!(
        (status, answer["code"].as_str(), answer["field"].as_str()),
        (409, Some("conflict"), Some("id")),
        "{answer}"
    );
    let booking = json!({ "id": their_appointment, "fields": { "patient_id": ours,
        "practitioner_id": clinician, "start": "2026-11-25T15:00:00Z", "duration_mins": 20 } });
    let (status, answer) = server.post("/v1/appointments", Some(token), booking).await;
    assert_eq!(
        (status, answer["code"].as_str(), answer["field"].as_str()),
        (409, Some("conflict"), Some("id")),
        "{answer}"
    );
    // Clinic A's records are as they were: still theirs.
    let owner_of_patient =
        sqlx::query_scalar::<_, String>("SELECT clinic_id FROM patients WHERE id = $1")
            .bind(&their_patient)
            .fetch_one(&pool)
            .await
            .unwrap();
    let owner_of_appointment =
        sqlx::query_scalar::<_, String>("SELECT clinic_id FROM appointments WHERE id = $1")
            .bind(&their_appointment)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        [owner_of_patient, owner_of_appointment],
        [a.clinic_id.to_string(), a.clinic_id.to_string()]
    );
}
