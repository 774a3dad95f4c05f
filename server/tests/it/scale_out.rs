//! Two server instances on one database, as behind a load balancer, with a client whose
//! requests alternate between them: sign-in with its second factor, the idle timeout,
//! sign-in throttling and revocation behave exactly as with one instance, because nothing
//! a request needs lives in an instance's memory. Runs on both legs: two pools on one
//! SQLite file, and (on the PostgreSQL leg) two pools on one PostgreSQL database.

use clinicdesk_protocol::audit::to_hex;
use clinicdesk_protocol::mfa::{LoginStep, MfaEnrolled, TotpSetup};
use clinicdesk_protocol::wire::{LoginResponse, login_proof_bytes};
use ed25519_dalek::Signer;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{HARNESS_APP_VERSION, TestDevice, TestServer, password_of};

const CLINIC: u128 = 0x5CA1E;

/// Challenge on one instance, password and device proof on the other.
async fn password_step(
    challenge_on: &TestServer,
    login_on: &TestServer,
    device: &TestDevice,
    user: &str,
    password: &str,
) -> (u16, Value) {
    let nonce = device.challenge(challenge_on).await;
    let signature = device
        .key
        .sign(&login_proof_bytes(&nonce, device.id, user))
        .to_bytes();
    login_on
        .post(
            "/v1/auth/login",
            None,
            json!({
                "username": user,
                "password": password,
                "device_id": device.id,
                "nonce": nonce,
                "device_signature": to_hex(&signature),
                "app_version": HARNESS_APP_VERSION,
            }),
        )
        .await
}

#[tokio::test]
async fn a_client_alternating_between_two_instances_sees_one_server() {
    let a = TestServer::start().await;
    let b = a.another_instance().await;
    assert_ne!(a.url, b.url);
    let report = a.seed(CLINIC, "Scale-out clinic").await;
    let clinic = Uuid::from_u128(CLINIC);
    // Enrolled through B with a code A's database issued.
    let device = TestDevice::enroll(&b, &report.enrollment_code).await;
    let password = password_of(&report, "clinician");

    // First sign-in: challenge on A, password on B, TOTP set up on A, confirmed on B.
    let (status, body) = password_step(&a, &b, &device, "clinician", password).await;
    assert_eq!(status, 200, "{body}");
    let LoginStep::SetUpSecondFactor(ticket) = serde_json::from_value(body).unwrap() else {
        panic!("a first sign-in sets up a second factor");
    };
    let (status, body) = a
        .post(
            "/v1/auth/mfa/setup/totp",
            None,
            json!({ "ticket": ticket.ticket }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let setup: TotpSetup = serde_json::from_value(body).unwrap();
    a.authenticator.lock().unwrap().insert(
        (clinic, "clinician".into()),
        (setup.secret_base32.expose().to_owned(), 0),
    );
    let code = b.totp_code(clinic, "clinician");
    let (status, body) = b
        .post(
            "/v1/auth/mfa/setup/totp/confirm",
            None,
            json!({ "ticket": ticket.ticket, "code": code }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let enrolled: MfaEnrolled = serde_json::from_value(body).unwrap();
    let token = enrolled.session.session_token.expose().to_owned();

    // The session works on both, and activity on either keeps it alive on both.
    for (i, server) in [&a, &b, &a, &b].into_iter().enumerate() {
        let (status, body) = server.get("/v1/appointments", &token).await;
        assert_eq!(status, 200, "request {i}: {body}");
        a.clock.advance_ms(10 * 60 * 1000);
    }
    // Idle for longer than the clinic allows: whichever instance is asked, it is over.
    a.clock.advance_ms(15 * 60 * 1000 + 1);
    let (status, body) = b.get("/v1/appointments", &token).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("session_expired"))
    );
    let (status, _) = a.get("/v1/appointments", &token).await;
    assert_eq!(status, 401);

    // Second sign-in without the grant: a TOTP ticket from B is redeemed on A, once.
    let (status, body) = password_step(&b, &a, &device, "clinician", password).await;
    assert_eq!(status, 200, "{body}");
    let LoginStep::SecondFactor(ticket) = serde_json::from_value(body).unwrap() else {
        panic!("the second factor is asked for");
    };
    let code = a.totp_code(clinic, "clinician");
    let (status, body) = a
        .post(
            "/v1/auth/mfa/totp",
            None,
            json!({ "ticket": ticket.ticket, "code": code }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let session: LoginResponse = serde_json::from_value(body).unwrap();
    let (status, _) = b
        .post(
            "/v1/auth/mfa/totp",
            None,
            json!({ "ticket": ticket.ticket, "code": b.totp_code(clinic, "clinician") }),
        )
        .await;
    assert_eq!(status, 401, "the ticket was spent on the other instance");

    // Wrong passwords counted across both instances lock the account on both.
    let mut statuses = Vec::new();
    for i in 0..6 {
        let (on, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        statuses.push(
            password_step(on, other, &device, "frontdesk", "not the password")
                .await
                .0,
        );
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
    let (status, _) = password_step(
        &b,
        &a,
        &device,
        "frontdesk",
        password_of(&report, "frontdesk"),
    )
    .await;
    assert_eq!(status, 429, "the lockout holds on the other instance too");

    // An admin revokes the workstation through B: A refuses its session at once.
    let admin_device = a.enroll_another(clinic).await;
    let admin = admin_device
        .login(&a, "admin", password_of(&report, "admin"))
        .await;
    let (status, body) = b
        .post(
            &format!("/v1/devices/{}/revoke", device.id),
            Some(admin.session_token.expose()),
            json!({}),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (_, body) = a
        .get("/v1/appointments", session.session_token.expose())
        .await;
    assert_eq!(body["code"], "device_revoked");
}
