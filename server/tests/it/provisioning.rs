//! Self-serve onboarding through the real server: an operator token provisions clinics
//! (50 at once, each its own), a retry with the same idempotency key answers for the same
//! clinic, and a first password (the operator's or an admin's) signs in once, only to
//! choose one's own before the second factor.

use std::time::Instant;

use clinicdesk_protocol::mfa::LoginStep;
use clinicdesk_protocol::wire::{ClinicProvisioned, UserList};
use clinicdesk_server::admin::operator::{create_operator_token, revoke_operator_token};
use serde_json::{Value, json};
use sqlx::Row;
use uuid::Uuid;

use crate::harness::{SignedIn, TestDevice, TestServer, password_of, run_cli};

const OWN_PASSWORD: &str = "copper-meadow-signal-58";

fn new_clinic(key: &str, name: &str) -> Value {
    json!({
        "idempotency_key": key,
        "clinic_name": name,
        "admin_username": "owner",
        "admin_display_name": "Pat Owner (synthetic)",
    })
}

async fn provision(server: &TestServer, token: &str, body: Value) -> (u16, Value) {
    server.post("/v1/clinics", Some(token), body).await
}

async fn operator_token(server: &TestServer) -> String {
    create_operator_token(&server.store, &server.clock, "onboarding test")
        .await
        .unwrap()
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_provisionings_each_make_one_clinic_of_its_own() {
    let server = TestServer::start().await;
    let token = operator_token(&server).await;
    let started = Instant::now();
    let answers = futures_util::future::join_all((0..50).map(|i| {
        let (server, token) = (&server, &token);
        async move {
            provision(
                server,
                token,
                new_clinic(
                    &format!("onboard-{i:04}"),
                    &format!("Clinic {i} (synthetic)"),
                ),
            )
            .await
        }
    }))
    .await;
    // Reported, not asserted: machines are shared.
    eprintln!("50 concurrent provisionings: {:?}", started.elapsed());
    let mut done = Vec::new();
    for (status, body) in answers {
        assert_eq!(status, 201, "{body}");
        done.push(serde_json::from_value::<ClinicProvisioned>(body).unwrap());
    }
    let mut ids: Vec<Uuid> = done.iter().map(|d| d.clinic_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50);

    // Each clinic: exactly its one admin, waiting to choose a password, and one code.
    let owner = server.owner_pool().await;
    for d in &done {
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM users WHERE clinic_id = $1),
                    (SELECT count(*) FROM users WHERE clinic_id = $1 AND id = $2
                        AND role = 'admin' AND must_change_password = 1),
                    (SELECT count(*) FROM enrollment_codes WHERE clinic_id = $1),
                    (SELECT idle_timeout_secs FROM clinics WHERE id = $1),
                    (SELECT count(*) FROM audit_events WHERE clinic_id = $1
                        AND action = 'user_created' AND actor_user_id = $3)",
        )
        .bind(d.clinic_id.to_string())
        .bind(d.admin_user_id.to_string())
        .bind(Uuid::nil().to_string())
        .fetch_one(&owner)
        .await
        .unwrap();
        let counts: Vec<i64> = (0..5).map(|i| row.get(i)).collect();
        assert_eq!(counts, vec![1, 1, 1, 900, 1], "{}", d.clinic_name);
    }

    // Two of them start for real: a workstation with their own code, the admin's first
    // sign-in, and each sees only their clinic's one user.
    for d in &done[..2] {
        let device = TestDevice::enroll(&server, d.enrollment_code.expose()).await;
        assert_eq!(device.clinic_id, d.clinic_id);
        let admin = device
            .first_login(&server, "owner", d.first_password.expose(), OWN_PASSWORD)
            .await;
        assert_eq!(admin.user.clinic_id, d.clinic_id);
        let (status, body) = server.get("/v1/users", admin.session_token.expose()).await;
        assert_eq!(status, 200);
        let users: UserList = serde_json::from_value(body).unwrap();
        assert_eq!(users.users.len(), 1);
        assert_eq!(users.users[0].user_id, d.admin_user_id);
    }
    // One clinic's first password is not another's.
    let device = TestDevice::enroll(&server, done[2].enrollment_code.expose()).await;
    let (status, _) = device
        .try_login(&server, "owner", done[3].first_password.expose())
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_retry_with_the_same_key_answers_for_the_same_clinic() {
    let server = TestServer::start().await;
    let token = operator_token(&server).await;
    let body = new_clinic("retry-key-0001", "Harbour Clinic (synthetic)");
    let (status, first) = provision(&server, &token, body.clone()).await;
    assert_eq!(status, 201, "{first}");
    let first: ClinicProvisioned = serde_json::from_value(first).unwrap();

    // Ten retries at once: one clinic, each answer for it, 200 not 201.
    let retries =
        futures_util::future::join_all((0..10).map(|_| provision(&server, &token, body.clone())))
            .await;
    for (status, answer) in retries {
        assert_eq!(status, 200, "{answer}");
        let again: ClinicProvisioned = serde_json::from_value(answer).unwrap();
        assert_eq!(
            (again.clinic_id, again.admin_user_id),
            (first.clinic_id, first.admin_user_id)
        );
    }
    // Each answer's codes replace the ones before: the latest works.
    let (status, last) = provision(&server, &token, body.clone()).await;
    assert_eq!(status, 200, "{last}");
    let last: ClinicProvisioned = serde_json::from_value(last).unwrap();
    assert_eq!(last.clinic_id, first.clinic_id);
    let clinics: i64 = sqlx::query_scalar("SELECT count(*) FROM clinics WHERE name = $1")
        .bind("Harbour Clinic (synthetic)")
        .fetch_one(&server.owner_pool().await)
        .await
        .unwrap();
    assert_eq!(clinics, 1);

    // The latest answer's codes replaced the earlier ones.
    let (status, err) = server
        .post(
            "/v1/devices/enroll",
            None,
            crate::harness::enroll_body(
                first.enrollment_code.expose(),
                "Old code",
                &ed25519_dalek::SigningKey::from_bytes(&crate::harness::rand32()),
            ),
        )
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (401, Some("invalid_enrollment_code"))
    );
    let device = TestDevice::enroll(&server, last.enrollment_code.expose()).await;
    let (status, _) = device
        .try_login(&server, "owner", first.first_password.expose())
        .await;
    assert_eq!(status, 401, "the replaced first password");

    // The same key for another request is a conflict, and creates nothing.
    let mut other = body.clone();
    other["clinic_name"] = json!("Another Clinic (synthetic)");
    let (status, err) = provision(&server, &token, other).await;
    assert_eq!(
        (status, err["field"].as_str()),
        (409, Some("idempotency_key"))
    );

    // Once the admin has taken over, a retry cannot hand out new codes.
    device
        .first_login(&server, "owner", last.first_password.expose(), OWN_PASSWORD)
        .await;
    let (status, err) = provision(&server, &token, body).await;
    assert_eq!(
        (status, err["field"].as_str()),
        (409, Some("idempotency_key"))
    );
}

#[tokio::test]
async fn only_a_live_operator_token_provisions() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login,
    } = server.signed_in(0x0A, "admin").await;
    let body = new_clinic("auth-check-01", "Nowhere Clinic (synthetic)");
    // No token, or any clinic user's session: not an operator.
    let (status, _) = server.post("/v1/clinics", None, body.clone()).await;
    assert_eq!(status, 401);
    for user in &report.users {
        let session = if user.username == "admin" {
            login.session_token.expose().to_owned()
        } else {
            device
                .login(
                    &server,
                    &user.username,
                    password_of(&report, &user.username),
                )
                .await
                .session_token
                .expose()
                .to_owned()
        };
        let (status, _) = provision(&server, &session, body.clone()).await;
        assert_eq!(status, 401, "{}", user.username);
    }
    let (id, token) = create_operator_token(&server.store, &server.clock, "to revoke")
        .await
        .unwrap();
    // Bad requests name their field.
    for (field, value) in [
        ("idempotency_key", json!("short")),
        ("idempotency_key", json!("has spaces in it")),
        ("clinic_name", json!("  ")),
        ("admin_username", json!("Not Valid")),
        ("admin_display_name", json!("")),
    ] {
        let mut bad = body.clone();
        bad[field] = value;
        let (status, err) = provision(&server, &token, bad).await;
        assert_eq!((status, err["field"].as_str()), (400, Some(field)));
    }
    assert!(
        revoke_operator_token(&server.store, &server.clock, id)
            .await
            .unwrap()
    );
    let (status, _) = provision(&server, &token, body).await;
    assert_eq!(status, 401, "a revoked token");
    let clinics: i64 = sqlx::query_scalar("SELECT count(*) FROM clinics")
        .fetch_one(&server.owner_pool().await)
        .await
        .unwrap();
    assert_eq!(clinics, 1, "nothing was provisioned");
}

#[tokio::test]
async fn a_first_password_signs_in_once_only_to_choose_ones_own() {
    let server = TestServer::start().await;
    let SignedIn { device, login, .. } = server.signed_in(0x0A, "admin").await;
    let first = "plum-harbor-velvet-31";
    let (status, body) = server
        .post(
            "/v1/users",
            Some(login.session_token.expose()),
            json!({ "username": "sam.desk", "display_name": "Sam Desk (synthetic)",
                    "role": "front_desk", "password": first }),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let (status, body) = device.try_login(&server, "sam.desk", first).await;
    assert_eq!(status, 200, "{body}");
    let LoginStep::ChooseNewPassword(ticket) = serde_json::from_value(body).unwrap() else {
        panic!("a first password must be replaced first");
    };
    assert!(ticket.methods.is_empty());
    // The ticket opens no second-factor step: no session without one's own password.
    for path in [
        "/v1/auth/mfa/setup/totp",
        "/v1/auth/mfa/totp",
        "/v1/auth/mfa/recovery",
    ] {
        let (status, err) = server
            .post(
                path,
                None,
                json!({ "ticket": ticket.ticket, "code": "000000" }),
            )
            .await;
        assert_eq!(
            (status, err["code"].as_str()),
            (401, Some("invalid_second_factor")),
            "{path}"
        );
    }
    // Weak, or the same again: refused, the step still waits.
    for weak in ["password123", first, "aaaaaaaaaaaaaaaa"] {
        let (status, err) = server
            .post(
                "/v1/auth/password/first",
                None,
                json!({ "ticket": ticket.ticket, "new_password": weak }),
            )
            .await;
        assert_eq!((status, err["code"].as_str()), (400, Some("weak_password")));
    }
    let (status, body) = server
        .post(
            "/v1/auth/password/first",
            None,
            json!({ "ticket": ticket.ticket, "new_password": OWN_PASSWORD }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(matches!(
        serde_json::from_value(body).unwrap(),
        LoginStep::SetUpSecondFactor(_)
    ));
    // The ticket was spent; the first password no longer signs in; the new one does.
    let (status, _) = server
        .post(
            "/v1/auth/password/first",
            None,
            json!({ "ticket": ticket.ticket, "new_password": "another-fine-phrase-77" }),
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = device.try_login(&server, "sam.desk", first).await;
    assert_eq!(status, 401);
    let (status, body) = device.try_login(&server, "sam.desk", OWN_PASSWORD).await;
    assert_eq!(status, 200);
    assert!(matches!(
        serde_json::from_value(body).unwrap(),
        LoginStep::SetUpSecondFactor(_)
    ));
    let changed = server.events_of("password_changed").await;
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].route, "first_password");

    // A first password nobody used expires after 72 hours, answering as a wrong one.
    let later = "ember-canyon-ripple-64";
    let (status, _) = server
        .post(
            "/v1/users",
            Some(login.session_token.expose()),
            json!({ "username": "late.user", "display_name": "Late User (synthetic)",
                    "role": "billing", "password": later }),
        )
        .await;
    assert_eq!(status, 201);
    server.clock.advance_ms(72 * 3_600_000 + 1);
    let (status, err) = device.try_login(&server, "late.user", later).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (401, Some("invalid_credentials"))
    );
}

/// Runs the server's CLI on the test server's data directory.
#[tokio::test]
async fn the_console_provisions_the_same_way_and_its_tokens_work_over_the_api() {
    let server = TestServer::start().await;
    let provision_cli = || {
        let out = run_cli(
            &server,
            &[
                "provision-clinic",
                "--name",
                "Console Clinic (synthetic)",
                "--admin-username",
                "owner",
                "--admin-display-name",
                "Pat Owner (synthetic)",
                "--idempotency-key",
                "console-key-01",
                "--json",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<ClinicProvisioned>(&out.stdout).unwrap()
    };
    let first = provision_cli();
    let again = provision_cli();
    assert_eq!(again.clinic_id, first.clinic_id);
    assert_ne!(again.first_password, first.first_password);
    let device = TestDevice::enroll(&server, again.enrollment_code.expose()).await;
    device
        .first_login(
            &server,
            "owner",
            again.first_password.expose(),
            OWN_PASSWORD,
        )
        .await;

    // A refused request names its field and changes nothing.
    let out = run_cli(
        &server,
        &[
            "provision-clinic",
            "--name",
            "Bad",
            "--admin-username",
            "Not Valid",
            "--admin-display-name",
            "X",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin_username"));

    // An operator token made on the console works over the API until revoked there.
    let out = run_cli(&server, &["operator-token", "create", "--name", "ci"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_owned()
    };
    let (id, token) = (field("id "), field("token "));
    let (status, body) = provision(&server, &token, new_clinic("api-key-0001", "Api Clinic")).await;
    assert_eq!(status, 201, "{body}");
    let out = run_cli(&server, &["operator-token", "revoke", "--id", &id]);
    assert!(out.status.success());
    let (status, _) = provision(&server, &token, new_clinic("api-key-0002", "Api Clinic 2")).await;
    assert_eq!(status, 401);
}
