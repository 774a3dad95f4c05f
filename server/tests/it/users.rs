//! User management through the real API: admins create users (strong passwords only),
//! change roles and deactivate users; each change ends the user's sessions and grants at
//! once and is recorded on the server chain.

use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_protocol::mfa::{LoginStep, MfaMethod};
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::{UserList, UserSummary};
use serde_json::{Value, json};

use crate::harness::{SignedIn, TestServer, password_of};

const STRONG: &str = "violet-canoe-marble-47";

async fn users(server: &TestServer, token: &str) -> Vec<UserSummary> {
    let (status, body) = server.get("/v1/users", token).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value::<UserList>(body).unwrap().users
}

fn new_user(username: &str, password: &str) -> Value {
    json!({
        "username": username,
        "display_name": "Jo Billing (synthetic)",
        "role": "billing",
        "password": password,
    })
}

#[tokio::test]
async fn admins_create_users_with_strong_passwords_only() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login: admin,
    } = server.signed_in(0xA, "admin").await;
    let token = Some(admin.session_token.expose());

    for (body, field) in [
        (new_user("jo.billing", "CANARY-x"), "password"),
        (new_user("jo.billing", "password123456"), "password"),
        (new_user("jo.billing", "jo.billing2026!"), "password"),
        (new_user("Jo Billing", STRONG), "username"),
        (new_user("jo", STRONG), "username"),
    ] {
        let (status, answer) = server.post("/v1/users", token, body).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["field"], field, "{answer}");
        assert!(!answer.to_string().contains("CANARY"));
    }
    let (status, answer) = server
        .post("/v1/users", token, new_user("jo.billing", "CANARY-x"))
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("weak_password"))
    );

    let (status, body) = server
        .post("/v1/users", token, new_user("jo.billing", STRONG))
        .await;
    assert_eq!(status, 201, "{body}");
    let created: UserSummary = serde_json::from_value(body).unwrap();
    assert_eq!((created.role, created.active), (Role::Billing, true));
    assert!(created.first_password_pending);
    let listed = users(&server, admin.session_token.expose()).await;
    assert!(
        listed
            .iter()
            .find(|u| u.username == "jo.billing")
            .unwrap()
            .first_password_pending,
        "the stored flag, as the users list shows it"
    );
    let (status, body) = server
        .post("/v1/users", token, new_user("jo.billing", STRONG))
        .await;
    assert_eq!((status, body["field"].as_str()), (409, Some("username")));

    // Other roles cannot.
    let clinician = device
        .login(&server, "clinician", password_of(&report, "clinician"))
        .await;
    let (status, _) = server
        .post(
            "/v1/users",
            Some(clinician.session_token.expose()),
            new_user("mallory", STRONG),
        )
        .await;
    assert_eq!(status, 403);

    // The new user signs in once with the admin's password to choose their own, sets up
    // a second factor, and shows up with it.
    let login = device
        .first_login(&server, "jo.billing", STRONG, "quartz-lantern-orbit-92")
        .await;
    assert_eq!(login.user.role, Role::Billing);
    let listed = users(&server, admin.session_token.expose()).await;
    let jo = listed.iter().find(|u| u.username == "jo.billing").unwrap();
    assert_eq!(jo.mfa, vec![MfaMethod::Totp]);
    assert!(!jo.first_password_pending, "replaced at the first sign-in");
    assert_eq!(listed.len(), report.users.len() + 1);
    let created_events = server.events_of("user_created").await;
    assert_eq!(created_events.len(), 1);
    assert_eq!(created_events[0].actor_user_id, admin.user.user_id);
    assert_eq!(created_events[0].resource_id, created.user_id.to_string());
}

#[tokio::test]
async fn a_role_change_or_deactivation_ends_the_users_sessions_at_once() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login: admin,
    } = server.signed_in(0xA, "admin").await;
    let clinician = device
        .login(&server, "clinician", password_of(&report, "clinician"))
        .await;
    let token = Some(admin.session_token.expose());
    let id = clinician.user.user_id;

    // Not one's own account, not another clinic's.
    let (status, _) = server
        .post(
            &format!("/v1/users/{}/role", admin.user.user_id),
            token,
            json!({ "role": "clinician" }),
        )
        .await;
    assert_eq!(status, 403);
    let other = server.signed_in(0xB, "admin").await;
    let (status, _) = server
        .post(
            &format!("/v1/users/{id}/deactivate"),
            Some(other.login.session_token.expose()),
            json!({}),
        )
        .await;
    assert_eq!(status, 404);

    // A new role: the old session and the grant are gone; the next sign-in proves a second
    // factor again and carries the new role's minimum necessary.
    let (status, _) = server
        .post(
            &format!("/v1/users/{id}/role"),
            token,
            json!({ "role": "front_desk" }),
        )
        .await;
    assert_eq!(status, 204);
    let (status, body) = server
        .get("/v1/appointments", clinician.session_token.expose())
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("session_expired"))
    );
    let password = password_of(&report, "clinician");
    let (_, body) = device
        .try_login_with(
            &server,
            "clinician",
            password,
            clinician.mfa_grant.as_ref().map(|g| g.expose()),
        )
        .await;
    assert!(matches!(
        serde_json::from_value::<LoginStep>(body).unwrap(),
        LoginStep::SecondFactor(_)
    ));
    let again = device.login(&server, "clinician", password).await;
    assert_eq!(again.user.role, Role::FrontDesk);
    let appointment = server
        .get("/v1/appointments", again.session_token.expose())
        .await
        .1;
    let patient_id = appointment["appointments"][0]["patient_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, patient) = server
        .get(
            &format!("/v1/patients/{patient_id}"),
            again.session_token.expose(),
        )
        .await;
    assert!(
        patient.get("clinical").is_none(),
        "front desk reads no clinical summary"
    );

    // Deactivated: the session ends, and the right password answers like a wrong one.
    let (status, _) = server
        .post(&format!("/v1/users/{id}/deactivate"), token, json!({}))
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        server
            .get("/v1/appointments", again.session_token.expose())
            .await
            .0,
        401
    );
    let right = device.try_login(&server, "clinician", password).await;
    let wrong = device.try_login(&server, "clinician", "wrong").await;
    assert_eq!(right, wrong);
    let listed = users(&server, admin.session_token.expose()).await;
    let row = listed.iter().find(|u| u.user_id == id).unwrap();
    assert!(!row.active);
    assert_eq!(
        listed.last().unwrap().user_id,
        id,
        "inactive users come last"
    );

    for (action, expected) in [
        ("role_changed", AuditAction::RoleChanged),
        ("user_deactivated", AuditAction::UserDeactivated),
    ] {
        let recorded = server.events_of(action).await;
        assert_eq!(recorded.len(), 1, "{action}");
        assert_eq!(recorded[0].action, expected);
        assert_eq!(recorded[0].actor_user_id, admin.user.user_id);
        assert_eq!(recorded[0].resource_id, id.to_string());
    }
}

#[tokio::test]
async fn a_password_change_needs_the_current_one_and_ends_every_session() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login,
    } = server.signed_in(0xA, "clinician").await;
    let old = password_of(&report, "clinician").to_owned();
    let second = device.login(&server, "clinician", &old).await;
    let change =
        |current: &str, new: &str| json!({ "current_password": current, "new_password": new });
    let token = Some(login.session_token.expose());

    let (status, body) = server
        .post("/v1/auth/password", token, change("CANARY-wrong", STRONG))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_credentials"))
    );
    assert!(!body.to_string().contains("CANARY"));
    for weak in ["clinician2026!", "CANARY-x", old.as_str()] {
        let (status, body) = server
            .post("/v1/auth/password", token, change(&old, weak))
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("weak_password")),
            "{weak}"
        );
    }
    let (status, _) = server
        .post("/v1/auth/password", token, change(&old, STRONG))
        .await;
    assert_eq!(status, 204);

    // Both sessions are over, the grant too; the old password no longer works.
    for t in [login.session_token.expose(), second.session_token.expose()] {
        let (status, body) = server.get("/v1/appointments", t).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("session_expired"))
        );
    }
    assert_eq!(device.try_login(&server, "clinician", &old).await.0, 401);
    let (_, body) = device
        .try_login_with(
            &server,
            "clinician",
            STRONG,
            login.mfa_grant.as_ref().map(|g| g.expose()),
        )
        .await;
    assert!(matches!(
        serde_json::from_value::<LoginStep>(body).unwrap(),
        LoginStep::SecondFactor(_)
    ));
    let changed = server.events_of("password_changed").await;
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].actor_user_id, login.user.user_id);

    // Guessing the current password through a session is throttled like a login.
    let fresh = device.login(&server, "clinician", STRONG).await;
    let token = Some(fresh.session_token.expose());
    for _ in 0..clinicdesk_server::sign_in::throttle::ACCOUNT_LIMIT {
        let (status, _) = server
            .post(
                "/v1/auth/password",
                token,
                change("guess", "another-violet-canoe-88"),
            )
            .await;
        assert_eq!(status, 401);
    }
    let (status, body) = server
        .post(
            "/v1/auth/password",
            token,
            change(STRONG, "another-violet-canoe-88"),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("too_many_attempts"))
    );
}

/// The access review lists every user whose role reaches patient data, active or not, with
/// what a reviewer checks; the API and the CLI write the same CSV.
#[tokio::test]
async fn the_access_review_lists_every_user_with_phi_access() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login: admin,
    } = server.signed_in(0xA, "admin").await;
    let token = admin.session_token.expose();
    let clinician = device
        .login(&server, "clinician", password_of(&report, "clinician"))
        .await;
    let clinician_signed_in = clinicdesk_server::time::Clock::now_ms(&server.clock);
    let mut billing = new_user("jo.billing", STRONG);
    billing["display_name"] = json!("=HYPERLINK(\"x\") Jo (synthetic)");
    let (status, body) = server.post("/v1/users", Some(token), billing).await;
    assert_eq!(status, 201, "{body}");
    let frontdesk = users(&server, token)
        .await
        .into_iter()
        .find(|u| u.username == "frontdesk")
        .unwrap();
    let (status, _) = server
        .post(
            &format!("/v1/users/{}/deactivate", frontdesk.user_id),
            Some(token),
            json!({}),
        )
        .await;
    assert_eq!(status, 204);
    server.signed_in(0xB, "clinician").await;

    let (status, _) = server
        .get("/v1/audit/access-review", clinician.session_token.expose())
        .await;
    assert_eq!(status, 403, "a clinician reviews no one");
    let resp = server
        .client()
        .get(format!("{}/v1/audit/access-review", server.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv_bytes = resp.bytes().await.unwrap();
    let mut reader = csv::Reader::from_reader(csv_bytes.as_ref());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "username",
            "display_name",
            "role",
            "phi_access",
            "status",
            "second_factors",
            "workstations",
            "last_sign_in_utc",
            "user_id"
        ]
    );
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    let usernames: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    // By role, then username; the admin (no patient data) and clinic B are not listed.
    assert_eq!(usernames, ["jo.billing", "clinician", "frontdesk"]);
    let last_sign_in = clinicdesk_server::time::rfc3339(clinician_signed_in).unwrap();
    assert_eq!(
        rows[1][2..8],
        [
            "clinician",
            "schedule;demographics;clinical",
            "active",
            "totp",
            "Test workstation",
            last_sign_in.as_str(),
        ]
    );
    assert_eq!(rows[1][8], clinician.user.user_id.to_string());
    assert_eq!(
        rows[0][1..8],
        [
            "'=HYPERLINK(\"x\") Jo (synthetic)",
            "billing",
            "demographics",
            "active",
            "none",
            "",
            "",
        ],
        "never signed in; a formula is defused"
    );
    assert_eq!(rows[2][4], "deactivated");

    let stdout = crate::harness::cli_ok(
        &server,
        &[
            "audit",
            "access-review",
            "--clinic",
            &report.clinic_id.to_string(),
        ],
    );
    assert_eq!(stdout, csv_bytes.as_ref(), "the CLI writes the same review");
    // Every user, for the compliance evidence: the admin too, with no PHI access.
    let every = crate::harness::cli_ok(
        &server,
        &[
            "audit",
            "access-review",
            "--all-users",
            "--clinic",
            &report.clinic_id.to_string(),
        ],
    );
    let every = String::from_utf8(every).unwrap();
    let admin_row = every
        .lines()
        .find(|l| l.starts_with("admin,"))
        .expect("the admin is listed");
    assert!(admin_row.contains(",admin,none,active,"), "{admin_row}");
    assert_eq!(
        every.lines().count(),
        stdout
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count()
            + 1,
        "the review's rows and the admin's"
    );
}

/// A new password has a length cap (a megabyte of password is refused by the field's
/// name, not hashed), a sign-in with an overlong one is a plain wrong password, and a body
/// declared bigger than the server takes is refused at once as too large.
#[tokio::test]
async fn overlong_passwords_and_oversized_bodies_are_refused_early() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login,
    } = server.signed_in(0xA, "clinician").await;
    let old = password_of(&report, "clinician").to_owned();
    let huge = format!("{STRONG}{}", "x".repeat(3 << 20));
    let token = Some(login.session_token.expose());
    let (status, body) = server
        .post(
            "/v1/auth/password",
            token,
            json!({ "current_password": old, "new_password": &huge[..200] }),
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("new_password")),
        "{body}"
    );
    let (status, _) = device.try_login(&server, "clinician", &huge[..4096]).await;
    assert_eq!(status, 401);

    // Declared too big: 413 with the error body, before the body is read.
    let resp = server
        .client()
        .post(format!("{}/v1/auth/password", server.url))
        .bearer_auth(login.session_token.expose())
        .header("content-type", "application/json")
        .body(json!({ "current_password": old, "new_password": huge }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "payload_too_large");
}
