//! The API through real TLS: enrollment, login, minimum necessary, clinic isolation,
//! session timeouts, audit ingest and the append-only store.

use clinicdesk_protocol::audit::Hash32;
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::{AppointmentList, Patient};
use clinicdesk_server::store::{Backend, Store, StoreLocation};
use serde_json::json;
use uuid::Uuid;

use crate::audit_log::{event, sign};
use crate::harness::{TestDevice, TestServer, password_of};

const CLINIC_A: u128 = 0xA;
const CLINIC_B: u128 = 0xB;

#[tokio::test]
async fn health_and_openapi_are_public_and_hsts_is_set() {
    let server = TestServer::start().await;
    let resp = server
        .client()
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age=")
    );
    let doc: serde_json::Value = server
        .client()
        .get(format!("{}/openapi.json", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/v1/patients/{patient_id}"]["get"].is_object());
}

#[tokio::test]
async fn enrollment_code_works_once() {
    let server = TestServer::start().await;
    let report = server.seed(CLINIC_A, "Clinic A").await;
    let device = TestDevice::enroll(&server, &report.enrollment_code).await;
    assert_eq!(device.clinic_id, Uuid::from_u128(CLINIC_A));
    let (status, body) = server
        .post(
            "/v1/devices/enroll",
            None,
            crate::harness::enroll_body(
                &report.enrollment_code,
                "Second",
                &ed25519_dalek::SigningKey::from_bytes(&crate::harness::rand32()),
            ),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "invalid_enrollment_code");
}

#[tokio::test]
async fn enrollment_code_expires() {
    let server = TestServer::start().await;
    let report = server.seed(CLINIC_A, "Clinic A").await;
    server.clock.advance_ms(15 * 60 * 1000 + 1);
    let key = ed25519_dalek::SigningKey::from_bytes(&crate::harness::rand32());
    let (status, body) = server
        .post(
            "/v1/devices/enroll",
            None,
            crate::harness::enroll_body(&report.enrollment_code, "Late", &key),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_enrollment_code"))
    );
}

#[tokio::test]
async fn wrong_password_and_unknown_user_answer_alike_without_values() {
    let server = TestServer::start().await;
    let report = server.seed(CLINIC_A, "Clinic A").await;
    let device = TestDevice::enroll(&server, &report.enrollment_code).await;
    let wrong = device
        .try_login(&server, "clinician", "CANARY-wrong-password")
        .await;
    let unknown = device
        .try_login(&server, "CANARY-nobody", "CANARY-wrong-password")
        .await;
    assert_eq!(wrong, unknown);
    assert_eq!(wrong.0, 401);
    assert_eq!(wrong.1, json!({ "code": "invalid_credentials" }));
    assert!(!wrong.1.to_string().contains("CANARY"));
}

#[tokio::test]
async fn login_needs_the_device_key() {
    let server = TestServer::start().await;
    let report = server.seed(CLINIC_A, "Clinic A").await;
    let mut device = TestDevice::enroll(&server, &report.enrollment_code).await;
    // Same device id, a different key: the signature over the nonce fails.
    device.key = ed25519_dalek::SigningKey::from_bytes(&crate::harness::rand32());
    let (status, body) = device
        .try_login(&server, "clinician", password_of(&report, "clinician"))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "invalid_signature");
}

#[tokio::test]
async fn roles_see_only_what_policy_allows() {
    let server = TestServer::start().await;
    let report = server.seed(CLINIC_A, "Clinic A").await;
    let device = TestDevice::enroll(&server, &report.enrollment_code).await;

    let clinician = device
        .login(&server, "clinician", password_of(&report, "clinician"))
        .await;
    assert_eq!(clinician.user.role, Role::Clinician);
    let (status, body) = server
        .get("/v1/appointments", clinician.session_token.expose())
        .await;
    assert_eq!(status, 200);
    let list: AppointmentList = serde_json::from_value(body).unwrap();
    assert_eq!(list.date, "2026-11-23");
    assert_eq!(list.appointments.len(), 5);
    let pid = list.appointments[0].patient_id;

    let (status, body) = server
        .get(
            &format!("/v1/patients/{pid}"),
            clinician.session_token.expose(),
        )
        .await;
    assert_eq!(status, 200);
    let full: Patient = serde_json::from_value(body).unwrap();
    assert!(full.clinical.is_some());

    let front = device
        .login(&server, "frontdesk", password_of(&report, "frontdesk"))
        .await;
    let (status, body) = server
        .get(&format!("/v1/patients/{pid}"), front.session_token.expose())
        .await;
    assert_eq!(status, 200);
    assert!(
        body.get("clinical").is_none(),
        "front desk got clinical fields"
    );
    assert_eq!(body["name"], json!(full.name.expose()));

    let admin = device
        .login(&server, "admin", password_of(&report, "admin"))
        .await;
    for path in ["/v1/appointments".to_owned(), format!("/v1/patients/{pid}")] {
        let (status, body) = server.get(&path, admin.session_token.expose()).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("forbidden")),
            "{path}"
        );
    }
}

#[tokio::test]
async fn another_clinics_patient_is_not_found() {
    let server = TestServer::start().await;
    let a = server.seed(CLINIC_A, "Clinic A").await;
    let b = server.seed(CLINIC_B, "Clinic B").await;
    let device_a = TestDevice::enroll(&server, &a.enrollment_code).await;
    let device_b = TestDevice::enroll(&server, &b.enrollment_code).await;
    let user_a = device_a
        .login(&server, "clinician", password_of(&a, "clinician"))
        .await;
    let user_b = device_b
        .login(&server, "clinician", password_of(&b, "clinician"))
        .await;
    let (_, body) = server
        .get("/v1/appointments", user_b.session_token.expose())
        .await;
    let list_b: AppointmentList = serde_json::from_value(body).unwrap();
    let (_, body) = server
        .get("/v1/appointments", user_a.session_token.expose())
        .await;
    let list_a: AppointmentList = serde_json::from_value(body).unwrap();
    let ids_a: Vec<Uuid> = list_a.appointments.iter().map(|x| x.patient_id).collect();
    for appt in &list_b.appointments {
        assert!(!ids_a.contains(&appt.patient_id));
        let (status, body) = server
            .get(
                &format!("/v1/patients/{}", appt.patient_id),
                user_a.session_token.expose(),
            )
            .await;
        assert_eq!(status, 404);
        assert_eq!(body, json!({ "code": "not_found" }));
    }
    // Indistinguishable from an id that does not exist at all.
    let (status, body) = server
        .get(
            &format!("/v1/patients/{}", Uuid::now_v7()),
            user_a.session_token.expose(),
        )
        .await;
    assert_eq!((status, body), (404, json!({ "code": "not_found" })));
    // A device of clinic B cannot sign in a user of clinic A with A's password.
    let (status, _) = device_b
        .try_login(&server, "clinician", password_of(&a, "clinician"))
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn idle_session_expires_on_the_server() {
    let server = TestServer::start().await;
    let report = server.seed(CLINIC_A, "Clinic A").await;
    let device = TestDevice::enroll(&server, &report.enrollment_code).await;
    let login = device
        .login(&server, "clinician", password_of(&report, "clinician"))
        .await;
    assert_eq!(login.idle_timeout_secs, 15 * 60);
    server.clock.advance_ms(14 * 60 * 1000);
    let (status, _) = server
        .get("/v1/appointments", login.session_token.expose())
        .await;
    assert_eq!(status, 200, "activity within 15 minutes keeps the session");
    server.clock.advance_ms(15 * 60 * 1000 + 1);
    let (status, body) = server
        .get("/v1/appointments", login.session_token.expose())
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("session_expired"))
    );
    // And it stays ended.
    let (status, _) = server
        .get("/v1/appointments", login.session_token.expose())
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn logout_ends_the_session() {
    let server = TestServer::start().await;
    let report = server.seed(CLINIC_A, "Clinic A").await;
    let device = TestDevice::enroll(&server, &report.enrollment_code).await;
    let login = device
        .login(&server, "frontdesk", password_of(&report, "frontdesk"))
        .await;
    let resp = server
        .client()
        .post(format!("{}/v1/auth/logout", server.url))
        .bearer_auth(login.session_token.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let (status, _) = server
        .get("/v1/appointments", login.session_token.expose())
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn admins_revoke_their_clinics_devices_and_a_revoked_device_is_refused_everywhere() {
    let server = TestServer::start().await;
    let report = server.seed(CLINIC_A, "Clinic A").await;
    let other_clinic = server.seed(CLINIC_B, "Clinic B").await;
    let device = TestDevice::enroll(&server, &report.enrollment_code).await;
    let clinician = device
        .login(&server, "clinician", password_of(&report, "clinician"))
        .await;
    let admin_device = server.enroll_another(Uuid::from_u128(CLINIC_A)).await;
    let admin = admin_device
        .login(&server, "admin", password_of(&report, "admin"))
        .await;
    let b_device = TestDevice::enroll(&server, &other_clinic.enrollment_code).await;
    let b_admin = b_device
        .login(&server, "admin", password_of(&other_clinic, "admin"))
        .await;
    let path = format!("/v1/devices/{}/revoke", device.id);

    // Only an admin, and only of the device's own clinic (another clinic's is 404).
    let (status, _) = server
        .post(&path, Some(clinician.session_token.expose()), json!({}))
        .await;
    assert_eq!(status, 403);
    let (status, body) = server
        .post(&path, Some(b_admin.session_token.expose()), json!({}))
        .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let (status, body) = server
        .post(&path, Some(admin.session_token.expose()), json!({}))
        .await;
    assert_eq!(status, 204, "{body}");

    // The device's live session, a new login and an audit upload all say device_revoked.
    let (_, body) = server
        .get("/v1/appointments", clinician.session_token.expose())
        .await;
    assert_eq!(body["code"], "device_revoked");
    let (_, body) = server
        .post(
            "/v1/auth/challenge",
            None,
            json!({ "device_id": device.id }),
        )
        .await;
    assert_eq!(body["code"], "device_revoked");
    let e1 = sign(
        &device,
        event(&device, clinician.user.user_id, 1, Hash32::GENESIS),
    );
    let (_, body) = server
        .post(
            "/v1/audit/batches",
            None,
            json!({ "device_id": device.id, "events": [e1] }),
        )
        .await;
    assert_eq!(body["code"], "device_revoked");
    // The admin's own device is untouched, and revoking twice is harmless.
    let (status, body) = server
        .post(&path, Some(admin.session_token.expose()), json!({}))
        .await;
    assert_eq!(status, 204, "{body}");
}

#[tokio::test]
async fn stored_audit_events_cannot_be_changed_or_deleted() {
    let server = TestServer::start().await;
    let report = server.seed(CLINIC_A, "Clinic A").await;
    let device = TestDevice::enroll(&server, &report.enrollment_code).await;
    let login = device
        .login(&server, "clinician", password_of(&report, "clinician"))
        .await;
    let e1 = sign(
        &device,
        event(&device, login.user.user_id, 1, Hash32::GENESIS),
    );
    let (status, _) = server
        .post(
            "/v1/audit/batches",
            None,
            json!({ "device_id": device.id, "events": [e1] }),
        )
        .await;
    assert_eq!(status, 200);
    // SQLite: triggers refuse. PostgreSQL: the application role holds no such grant, so
    // these statements go through a pool of that role (the owner's would be let through).
    let app = server.app_role_pool().await;
    let refusal = match server.store.backend() {
        Backend::Sqlite => "append-only",
        Backend::Postgres => "permission denied",
    };
    let update = sqlx::query("UPDATE audit_events SET action = 'login'")
        .execute(&app)
        .await;
    assert!(update.unwrap_err().to_string().contains(refusal));
    // Nor can an event be moved to another place in the log.
    let moved = sqlx::query("UPDATE audit_events SET leaf_index = leaf_index + 1000")
        .execute(&app)
        .await;
    assert!(moved.unwrap_err().to_string().contains(refusal));
    let delete = sqlx::query("DELETE FROM audit_events").execute(&app).await;
    assert!(delete.unwrap_err().to_string().contains(refusal));
    // Counted as the owner: on PostgreSQL the trail is behind the clinic wall, and this
    // pool names no clinic.
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE device_id = $1")
        .bind(device.id.to_string())
        .fetch_one(&server.owner_pool().await)
        .await
        .unwrap();
    assert_eq!(count, 1, "the event is still there");

    // PostgreSQL: stepping back from the application role gains nothing, because the
    // server logs in as a role that is only its member, never the tables' owner.
    if server.store.backend() == Backend::Postgres {
        assert!(!server.store.owner_reachable().await.unwrap());
        let mut conn = app.acquire().await.unwrap();
        sqlx::query("RESET ROLE").execute(&mut *conn).await.unwrap();
        for attack in [
            "DELETE FROM audit_events",
            "UPDATE audit_alerts SET kind = 'fork'",
            "ALTER TABLE patients DISABLE ROW LEVEL SECURITY",
            "DROP POLICY clinic_rows ON patients",
            "DROP TABLE audit_nodes",
            "SET ROLE postgres",
        ] {
            let refused = sqlx::query(attack).execute(&mut *conn).await.unwrap_err();
            let message = refused.to_string();
            assert!(
                message.contains("permission denied") || message.contains("must be owner"),
                "{attack}: {message}"
            );
        }
        // This connection no longer works as the application role: drop it from the pool.
        drop(conn.detach());
        // A server that logs in as the owner, by contrast, could have: the check that warns
        // at start tells the two apart.
        let as_owner = Store::open(&StoreLocation::postgres_as_owner(
            &server.database.as_ref().unwrap().owner,
        ))
        .await
        .unwrap();
        assert!(as_owner.owner_reachable().await.unwrap());
    }
}

#[tokio::test]
async fn malformed_bodies_name_a_field_never_echo_a_value() {
    let server = TestServer::start().await;
    let (status, body) = server
        .post(
            "/v1/devices/enroll",
            None,
            json!({ "enrollment_code": 42, "x": "CANARY-value" }),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body, json!({ "code": "bad_request", "field": "body" }));
    // Each key field is checked, and named, on its own.
    let good = crate::harness::enroll_body(
        "AAAA",
        "x",
        &ed25519_dalek::SigningKey::from_bytes(&crate::harness::rand32()),
    );
    for field in ["public_key", "device_secret", "recovery_public_key"] {
        let mut bad = good.clone();
        bad[field] = json!("CANARY");
        let (status, body) = server.post("/v1/devices/enroll", None, bad).await;
        assert_eq!(
            (status, body),
            (400, json!({ "code": "bad_request", "field": field }))
        );
    }
    // A low-order device key (here the identity, and the point of order 2) would let anyone
    // sign its audit events: refused.
    for weak in [
        format!("01{}", "00".repeat(31)),
        format!("ec{}7f", "ff".repeat(30)),
    ] {
        let mut bad = good.clone();
        bad["public_key"] = json!(weak);
        let (status, body) = server.post("/v1/devices/enroll", None, bad).await;
        assert_eq!(
            (status, body),
            (400, json!({ "code": "bad_request", "field": "public_key" }))
        );
    }
    // The recovery key must not be the device key itself.
    let mut same = good.clone();
    same["recovery_public_key"] = good["public_key"].clone();
    let (status, body) = server.post("/v1/devices/enroll", None, same).await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({ "code": "bad_request", "field": "recovery_public_key" })
        )
    );
}

#[tokio::test]
async fn unknown_routes_and_missing_tokens() {
    let server = TestServer::start().await;
    let (status, body) = server.get("/v1/appointments", "not-a-token").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    let resp = server
        .client()
        .get(format!("{}/v1/nothing-here", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    // A path that exists, with a method it does not offer: 405, a code, no handler run
    // (schemathesis found TRACE answered 500 here).
    for (method, path) in [
        ("TRACE", "/healthz"),
        ("PUT", "/v1/appointments"),
        ("DELETE", "/v1/users"),
        ("GET", "/v1/auth/login"),
    ] {
        let resp = server
            .client()
            .request(method.parse().unwrap(), format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405, "{method} {path}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "method_not_allowed", "{method} {path}");
    }
}

#[test]
fn a_route_without_a_policy_rule_cannot_be_served() {
    use axum::routing::get;
    use clinicdesk_server::http::router::{RouteDef, RouterError, build_router_from, route_defs};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = rt.block_on(crate::harness::state_in(
        dir.path(),
        std::sync::Arc::new(clinicdesk_server::time::SystemClock),
    ));
    let mut defs = route_defs();
    defs.push(RouteDef {
        method: "GET",
        path: "/v1/export-everything",
        handler: get(|| async { "all the PHI" }),
    });
    let err = build_router_from(state, defs).err().unwrap();
    assert_eq!(
        err,
        RouterError::MissingRule {
            method: "GET",
            path: "/v1/export-everything"
        }
    );
}

/// The public challenge route cannot grow the nonce table without bound: expired nonces go
/// when a new one is issued, and a device holds at most `MAX_LIVE_NONCES` live ones (the
/// app asks for one and uses it at once), the newest kept.
#[tokio::test]
async fn login_nonces_are_purged_and_bounded_per_device() {
    let server = TestServer::start().await;
    let report = server.seed(CLINIC_A, "Clinic A").await;
    let device = TestDevice::enroll(&server, &report.enrollment_code).await;
    let owner = server.owner_pool().await;
    let stored = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM login_nonces")
            .fetch_one(&owner)
            .await
            .unwrap()
    };
    device.challenge(&server).await;
    server.clock.advance_ms(3 * 60 * 1000);
    let limit = clinicdesk_server::sign_in::password::MAX_LIVE_NONCES;
    for _ in 0..limit + 5 {
        device.challenge(&server).await;
    }
    assert_eq!(stored().await, i64::try_from(limit).unwrap());
    // A login takes a fresh nonce, the newest, and signs with it.
    let login = device
        .login(&server, "clinician", password_of(&report, "clinician"))
        .await;
    assert!(!login.session_token.expose().is_empty());
}
