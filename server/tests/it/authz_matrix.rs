//! The authorization matrix: every route of the policy table (which the router is built
//! from, so a route missing from it cannot exist) called by every role, with no session, a
//! forged token, an expired session, a revoked device, and with another clinic's ids. Each
//! answer is checked against the table: allowed means the request got past authorization
//! (any answer but 401 and 403), denied means exactly `403 forbidden`.

use clinicdesk_protocol::policy::{self, Access, ROUTES};
use serde_json::Value;
use uuid::Uuid;

use crate::harness::{TestDevice, TestServer, acceptable_body, every_role, password_of};

/// Fills a route template's ids: harmless unknown ids by default (a permitted admin
/// action then answers 404 instead of changing anything), or `ids` where given.
fn fill(path: &str, ids: &[(&str, Uuid)]) -> String {
    let mut out = path.to_owned();
    for (name, id) in ids {
        out = out.replace(&format!("{{{name}}}"), &id.to_string());
    }
    for name in [
        "patient_id",
        "device_id",
        "user_id",
        "event_id",
        "grant_id",
        "appointment_id",
        "coverage_id",
        "practitioner_id",
        "import_id",
        "entry_id",
    ] {
        out = out.replace(&format!("{{{name}}}"), &Uuid::now_v7().to_string());
    }
    out
}

async fn call(server: &TestServer, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let url = format!("{}{path}", server.url);
    let client = server.client();
    // A body the routes that take one would accept, so that what answers is the route's
    // authorization and lookup, not the body's shape.
    let body = acceptable_body(path);
    let mut rb = match method {
        "GET" => client.get(url),
        "POST" => client.post(url).json(&body),
        // A record's change names the version it is based on.
        "PATCH" => client.patch(url).header("If-Match", "\"0\"").json(&body),
        // A directory link names the version it is based on too.
        "PUT" => client.put(url).header("If-Match", "\"0\"").json(&body),
        other => panic!("method {other} not in the matrix"),
    };
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn session_rules() -> impl Iterator<Item = &'static policy::RouteRule> {
    ROUTES
        .iter()
        .filter(|r| matches!(r.access, Access::Session(_) | Access::AnySession))
}

#[tokio::test]
async fn every_route_answers_every_role_and_state_as_the_policy_table_says() {
    let server = TestServer::start().await;
    let a = server.seed(0xA, "Clinic A").await;
    let device = TestDevice::enroll(&server, &a.enrollment_code).await;
    let sessions = every_role(&server, &a, &device).await;

    let mut checked = 0;
    for rule in session_rules() {
        let path = fill(rule.path, &[]);
        // No session, or a token the server never issued.
        for token in [None, Some("forged-token")] {
            let (status, body) = call(&server, rule.method, &path, token).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (401, Some("unauthenticated")),
                "{} {} with {token:?}",
                rule.method,
                rule.path
            );
        }
        if rule.access == Access::AnySession {
            continue; // logout: every role may; exercised last, below
        }
        let Access::Session(permission) = rule.access else {
            unreachable!()
        };
        for (role, token) in &sessions {
            let (status, body) = call(&server, rule.method, &path, Some(token)).await;
            if policy::allows(*role, permission) {
                assert!(
                    status != 401 && status != 403,
                    "{role:?} {} {} was refused: {status} {body}",
                    rule.method,
                    rule.path
                );
            } else {
                assert_eq!(
                    (status, body["code"].as_str()),
                    (403, Some("forbidden")),
                    "{role:?} {} {}",
                    rule.method,
                    rule.path
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 4 * 15, "the matrix covered only {checked} cells");

    // Another clinic's ids, with a role allowed the route: never found.
    let b = server.seed(0xB, "Clinic B").await;
    let device_b = TestDevice::enroll(&server, &b.enrollment_code).await;
    let b_admin = device_b
        .login(&server, "admin", password_of(&b, "admin"))
        .await;
    let b_patient: String =
        sqlx::query_scalar("SELECT id FROM patients WHERE clinic_id = $1 LIMIT 1")
            .bind(b.clinic_id.to_string())
            .fetch_one(&server.owner_pool().await)
            .await
            .unwrap();
    let b_event: String = sqlx::query_scalar("SELECT id FROM audit_events WHERE clinic_id = $1")
        .bind(b.clinic_id.to_string())
        .fetch_one(&server.owner_pool().await)
        .await
        .unwrap();
    let b_appointment: String =
        sqlx::query_scalar("SELECT id FROM appointments WHERE clinic_id = $1 LIMIT 1")
            .bind(b.clinic_id.to_string())
            .fetch_one(&server.owner_pool().await)
            .await
            .unwrap();
    let b_coverage: String =
        sqlx::query_scalar("SELECT id FROM coverages WHERE clinic_id = $1 LIMIT 1")
            .bind(b.clinic_id.to_string())
            .fetch_one(&server.owner_pool().await)
            .await
            .unwrap();
    let b_clinician: String = sqlx::query_scalar(
        "SELECT id FROM users WHERE clinic_id = $1 AND role = 'clinician' LIMIT 1",
    )
    .bind(b.clinic_id.to_string())
    .fetch_one(&server.owner_pool().await)
    .await
    .unwrap();
    // An import job of clinic B's, which puts a practitioner in its directory.
    let b_import = server
        .client()
        .post(format!("{}/v1/imports", server.url))
        .bearer_auth(b_admin.session_token.expose())
        .body(r#"{"resourceType":"Practitioner","id":"d1","name":[{"family":"Probe"}]}"#)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let b_entry = loop {
        let entry: Option<String> = sqlx::query_scalar(
            "SELECT id FROM practitioner_directory WHERE clinic_id = $1 LIMIT 1",
        )
        .bind(b.clinic_id.to_string())
        .fetch_optional(&server.owner_pool().await)
        .await
        .unwrap();
        match entry {
            Some(entry) => break entry,
            None => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    };
    let theirs = [
        (
            "import_id",
            b_import["id"].as_str().unwrap().parse().unwrap(),
        ),
        ("practitioner_id", b_clinician.parse().unwrap()),
        ("entry_id", b_entry.parse().unwrap()),
        ("coverage_id", b_coverage.parse().unwrap()),
        ("appointment_id", b_appointment.parse().unwrap()),
        ("patient_id", b_patient.parse().unwrap()),
        ("device_id", device_b.id),
        ("user_id", b_admin.user.user_id),
        ("event_id", b_event.parse().unwrap()),
        ("grant_id", server.insert_grant(b.clinic_id).await),
    ];
    for rule in session_rules().filter(|r| r.path.contains('{')) {
        let Access::Session(permission) = rule.access else {
            continue;
        };
        let (_, token) = sessions
            .iter()
            .find(|(role, _)| policy::allows(*role, permission))
            .expect("some role may call every session route");
        // The inclusion proof needs a tree size to reach its lookup of the event.
        let mut path = fill(rule.path, &theirs);
        if rule.path.ends_with("/inclusion") {
            path.push_str("?tree_size=1");
        }
        let (status, body) = call(&server, rule.method, &path, Some(token)).await;
        assert_eq!(
            status, 404,
            "{} {} with another clinic's id: {body}",
            rule.method, rule.path
        );
    }
    // Clinic B's admin still works: nothing of theirs was touched.
    assert_eq!(
        server
            .get("/v1/devices", b_admin.session_token.expose())
            .await
            .0,
        200
    );

    // A revoked device: every session route answers device_revoked. (Clinic B's admin
    // revokes their own workstation, which also ends their session on it.)
    let clinician = &sessions[1].1;
    let (status, _) = call(
        &server,
        "POST",
        &format!("/v1/devices/{}/revoke", device_b.id),
        Some(b_admin.session_token.expose()),
    )
    .await;
    assert_eq!(status, 204);
    for rule in session_rules() {
        let (status, body) = call(
            &server,
            rule.method,
            &fill(rule.path, &[]),
            Some(b_admin.session_token.expose()),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("device_revoked")),
            "{} {}",
            rule.method,
            rule.path
        );
    }

    // Logout works for every role, and the session is then over.
    for (role, token) in &sessions[..2] {
        let (status, _) = call(&server, "POST", "/v1/auth/logout", Some(token)).await;
        assert_eq!(status, 204, "{role:?}");
    }
    let (status, _) = call(&server, "GET", "/v1/appointments", Some(clinician)).await;
    assert_eq!(status, 401);

    // Past the idle timeout, every session route answers session_expired.
    server.clock.advance_ms(16 * 60 * 1000);
    let (_, admin_token) = &sessions[3];
    for rule in session_rules() {
        let (status, body) = call(
            &server,
            rule.method,
            &fill(rule.path, &[]),
            Some(admin_token),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("session_expired")),
            "{} {}",
            rule.method,
            rule.path
        );
    }
}
