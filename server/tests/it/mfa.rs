//! Second factors through the real API: a password never opens a session alone; TOTP and
//! WebAuthn (a software authenticator, `webauthn-authenticator-rs`) are set up and proven;
//! codes, tickets and recovery codes work once; grants, the session cap and an admin's
//! reset behave as documented.

use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_protocol::mfa::{LoginStep, MfaEnrolled, MfaMethod, MfaTicket, WebauthnChallenge};
use clinicdesk_protocol::wire::LoginResponse;
use serde_json::{Value, json};
use uuid::Uuid;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};

use clinicdesk_server::sign_in::mfa::MAX_TICKET_FAILURES;

use crate::harness::{SignedIn, TestDevice, TestServer, password_of};

const CLINIC: u128 = 0xA;

fn step(body: Value) -> LoginStep {
    serde_json::from_value(body).unwrap()
}

async fn password_step(
    server: &TestServer,
    device: &TestDevice,
    user: &str,
    password: &str,
) -> LoginStep {
    let (status, body) = device.try_login(server, user, password).await;
    assert_eq!(status, 200, "{body}");
    step(body)
}

fn ticket_of(step: LoginStep) -> MfaTicket {
    match step {
        LoginStep::SecondFactor(t) | LoginStep::SetUpSecondFactor(t) => t,
        LoginStep::SignedIn(_) => panic!("signed in without a second factor"),
        LoginStep::ChooseNewPassword(_) => panic!("seeded users have their own passwords"),
    }
}

async fn totp(server: &TestServer, ticket: &str, code: &str) -> (u16, Value) {
    server
        .post(
            "/v1/auth/mfa/totp",
            None,
            json!({ "ticket": ticket, "code": code }),
        )
        .await
}

fn code_of(body: &Value) -> &str {
    body["code"].as_str().unwrap_or_default()
}

/// A six-digit code that is not the right one for any step near now.
fn wrong_code(server: &TestServer, device: &TestDevice, user: &str) -> String {
    let right = server.totp_code(device.clinic_id, user);
    let wrong = (right.parse::<u32>().unwrap() + 500_000) % 1_000_000;
    format!("{wrong:06}")
}

#[tokio::test]
async fn a_password_alone_never_opens_a_session_and_totp_is_set_up_then_required() {
    let server = TestServer::start().await;
    let report = server.seed(CLINIC, "Clinic A").await;
    let device = TestDevice::enroll(&server, &report.enrollment_code).await;
    let password = password_of(&report, "frontdesk");

    // First sign-in: the right password yields a setup ticket, not a session.
    let setup = match password_step(&server, &device, "frontdesk", password).await {
        LoginStep::SetUpSecondFactor(t) => t,
        other => panic!("expected a setup step, got {other:?}"),
    };
    assert!(setup.methods.is_empty());
    let (status, body) = server.get("/v1/appointments", setup.ticket.expose()).await;
    assert_eq!((status, code_of(&body)), (401, "unauthenticated"));
    // A setup ticket proves nothing by itself.
    let (status, body) = totp(&server, setup.ticket.expose(), "123456").await;
    assert_eq!((status, code_of(&body)), (401, "invalid_second_factor"));
    // Confirming before a secret was issued, or with a wrong code, is refused.
    let (status, _) = server
        .post(
            "/v1/auth/mfa/setup/totp/confirm",
            None,
            json!({ "ticket": setup.ticket, "code": "123456" }),
        )
        .await;
    assert_eq!(status, 401);
    let login = device
        .set_up_totp(&server, "frontdesk", setup.ticket.expose())
        .await;
    let (status, _) = server
        .get("/v1/appointments", login.session_token.expose())
        .await;
    assert_eq!(status, 200);
    assert!(login.mfa_grant.is_some());
    let codes =
        server.recovery_codes.lock().unwrap()[&(device.clinic_id, "frontdesk".into())].clone();
    assert_eq!(codes.len(), 10);

    // The secret is sealed at rest: neither its base32 nor its bytes are in the database.
    let (secret, _) =
        server.authenticator.lock().unwrap()[&(device.clinic_id, "frontdesk".into())].clone();
    let stored: String = sqlx::query_scalar("SELECT secret_sealed FROM mfa_totp")
        .fetch_one(&server.owner_pool().await)
        .await
        .unwrap();
    let raw = clinicdesk_server::sign_in::mfa::totp::TotpSecret::from_base32(&secret).unwrap();
    assert!(!stored.contains(&secret));
    assert!(!stored.contains(&clinicdesk_protocol::audit::to_hex(raw.as_bytes())));
    // Setting up is an audited event of the user's, on the server chain.
    let enrolled = server.events_of("mfa_enrolled").await;
    assert_eq!(enrolled.len(), 1);
    assert_eq!(enrolled[0].actor_user_id, login.user.user_id);
    assert_eq!(enrolled[0].resource_id, login.user.user_id.to_string());
    assert_eq!(
        enrolled[0].request.as_ref().unwrap().session_device_id,
        Some(device.id)
    );

    // From now on: a verify ticket naming the methods, and the setup ticket is spent.
    let (status, _) = server
        .post(
            "/v1/auth/mfa/setup/totp",
            None,
            json!({ "ticket": setup.ticket }),
        )
        .await;
    assert_eq!(status, 401);
    let t = ticket_of(password_step(&server, &device, "frontdesk", password).await);
    assert_eq!(t.methods, vec![MfaMethod::Totp, MfaMethod::RecoveryCode]);
    // A code already used (the one that confirmed the setup) is refused; a fresh one works
    // once, and the ticket is spent with it.
    let used = {
        let apps = server.authenticator.lock().unwrap();
        let (secret, last) = &apps[&(device.clinic_id, "frontdesk".into())];
        clinicdesk_server::sign_in::mfa::totp::TotpSecret::from_base32(secret)
            .unwrap()
            .code_at(last * clinicdesk_server::sign_in::mfa::totp::STEP_SECS)
            .unwrap()
    };
    let (status, body) = totp(&server, t.ticket.expose(), &used).await;
    assert_eq!((status, code_of(&body)), (401, "invalid_second_factor"));
    let fresh = server.totp_code(device.clinic_id, "frontdesk");
    let (status, body) = totp(&server, t.ticket.expose(), &fresh).await;
    assert_eq!(status, 200, "{body}");
    let next = server.totp_code(device.clinic_id, "frontdesk");
    let (status, _) = totp(&server, t.ticket.expose(), &next).await;
    assert_eq!(status, 401, "a ticket is single use");

    // Three wrong codes burn a ticket: the right code no longer helps.
    let t = ticket_of(password_step(&server, &device, "frontdesk", password).await);
    for _ in 0..MAX_TICKET_FAILURES {
        let wrong = wrong_code(&server, &device, "frontdesk");
        assert_eq!(totp(&server, t.ticket.expose(), &wrong).await.0, 401);
    }
    let right = server.totp_code(device.clinic_id, "frontdesk");
    assert_eq!(totp(&server, t.ticket.expose(), &right).await.0, 401);

    // A ticket expires after five minutes.
    let t = ticket_of(password_step(&server, &device, "frontdesk", password).await);
    server.clock.advance_ms(5 * 60 * 1000 + 1);
    let right = server.totp_code(device.clinic_id, "frontdesk");
    assert_eq!(totp(&server, t.ticket.expose(), &right).await.0, 401);

    // A recovery code works once, in any case and spacing.
    let t = ticket_of(password_step(&server, &device, "frontdesk", password).await);
    let typed = codes[3].to_lowercase().replace('-', " ");
    let (status, body) = server
        .post(
            "/v1/auth/mfa/recovery",
            None,
            json!({ "ticket": t.ticket, "code": typed }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let t = ticket_of(password_step(&server, &device, "frontdesk", password).await);
    let (status, _) = server
        .post(
            "/v1/auth/mfa/recovery",
            None,
            json!({ "ticket": t.ticket, "code": codes[3] }),
        )
        .await;
    assert_eq!(status, 401);
}

async fn login_with_grant(
    server: &TestServer,
    device: &TestDevice,
    user: &str,
    password: &str,
    grant: &str,
) -> LoginStep {
    let (status, body) = device
        .try_login_with(server, user, password, Some(grant))
        .await;
    assert_eq!(status, 200, "{body}");
    step(body)
}

#[tokio::test]
async fn a_grant_spares_the_second_factor_on_its_device_for_twelve_hours_only() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login,
    } = server.signed_in(CLINIC, "clinician").await;
    let password = password_of(&report, "clinician");
    let grant = login.mfa_grant.clone().unwrap().expose().to_owned();

    match login_with_grant(&server, &device, "clinician", password, &grant).await {
        LoginStep::SignedIn(l) => {
            assert!(l.mfa_grant.is_none(), "a grant is not extended by using it");
            assert_eq!(
                server
                    .get("/v1/appointments", l.session_token.expose())
                    .await
                    .0,
                200
            );
        }
        other => panic!("expected a session, got {other:?}"),
    }
    // The grant is bound to the user and the device.
    let second = server.enroll_another(device.clinic_id).await;
    ticket_of(login_with_grant(&server, &second, "clinician", password, &grant).await);
    let other_user = password_of(&report, "frontdesk");
    ticket_of(login_with_grant(&server, &device, "frontdesk", other_user, &grant).await);
    // A wrong password is still a wrong password.
    let (status, _) = device.try_login(&server, "clinician", "wrong").await;
    assert_eq!(status, 401);
    // After twelve hours the second factor is due again.
    server.clock.advance_ms(12 * 60 * 60 * 1000);
    ticket_of(login_with_grant(&server, &device, "clinician", password, &grant).await);
}

#[tokio::test]
async fn a_third_session_revokes_the_oldest() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login: first,
    } = server.signed_in(CLINIC, "frontdesk").await;
    let password = password_of(&report, "frontdesk");
    let second: LoginResponse = device.login(&server, "frontdesk", password).await;
    assert_eq!(
        server
            .get("/v1/appointments", first.session_token.expose())
            .await
            .0,
        200
    );
    let third = device.login(&server, "frontdesk", password).await;
    let (status, body) = server
        .get("/v1/appointments", first.session_token.expose())
        .await;
    assert_eq!((status, code_of(&body)), (401, "session_expired"));
    for live in [&second, &third] {
        assert_eq!(
            server
                .get("/v1/appointments", live.session_token.expose())
                .await
                .0,
            200
        );
    }
}

#[tokio::test]
async fn an_admin_reset_removes_the_factors_ends_the_sessions_and_is_audited() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login: clinician,
    } = server.signed_in(CLINIC, "clinician").await;
    let admin = device
        .login(&server, "admin", password_of(&report, "admin"))
        .await;
    let reset = |user: Uuid| format!("/v1/users/{user}/mfa/reset");

    // Not for other roles, not on oneself, not across clinics.
    let (status, _) = server
        .post(
            &reset(admin.user.user_id),
            Some(clinician.session_token.expose()),
            json!({}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = server
        .post(
            &reset(admin.user.user_id),
            Some(admin.session_token.expose()),
            json!({}),
        )
        .await;
    assert_eq!(status, 403);
    let other = server.seed(0xB, "Clinic B").await;
    let theirs: String = sqlx::query_scalar("SELECT id FROM users WHERE clinic_id = $1 LIMIT 1")
        .bind(other.clinic_id.to_string())
        .fetch_one(&server.owner_pool().await)
        .await
        .unwrap();
    let (status, _) = server
        .post(
            &reset(theirs.parse().unwrap()),
            Some(admin.session_token.expose()),
            json!({}),
        )
        .await;
    assert_eq!(status, 404);

    let (status, _) = server
        .post(
            &reset(clinician.user.user_id),
            Some(admin.session_token.expose()),
            json!({}),
        )
        .await;
    assert_eq!(status, 204);
    let (status, body) = server
        .get("/v1/appointments", clinician.session_token.expose())
        .await;
    assert_eq!((status, code_of(&body)), (401, "session_expired"));
    let password = password_of(&report, "clinician");
    let grant = clinician.mfa_grant.unwrap().expose().to_owned();
    match login_with_grant(&server, &device, "clinician", password, &grant).await {
        LoginStep::SetUpSecondFactor(t) => assert!(t.methods.is_empty()),
        other => panic!("expected a new setup, got {other:?}"),
    }
    let resets = server.events_of("mfa_reset").await;
    assert_eq!(resets.len(), 1);
    assert_eq!(resets[0].action, AuditAction::MfaReset);
    assert_eq!(resets[0].actor_user_id, admin.user.user_id);
    assert_eq!(resets[0].resource_id, clinician.user.user_id.to_string());
}

fn origin(challenge: &WebauthnChallenge) -> Url {
    Url::parse(&challenge.origin).unwrap()
}

async fn webauthn_challenge(server: &TestServer, path: &str, ticket: &str) -> WebauthnChallenge {
    let (status, body) = server.post(path, None, json!({ "ticket": ticket })).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).unwrap()
}

#[tokio::test]
async fn a_passkey_is_registered_and_proven_with_a_software_authenticator() {
    let server = TestServer::start().await;
    let report = server.seed(CLINIC, "Clinic A").await;
    let device = TestDevice::enroll(&server, &report.enrollment_code).await;
    let password = password_of(&report, "clinician");
    let mut key = SoftPasskey::new(true);

    let t = ticket_of(password_step(&server, &device, "clinician", password).await);
    let c = webauthn_challenge(
        &server,
        "/v1/auth/mfa/setup/webauthn/challenge",
        t.ticket.expose(),
    )
    .await;
    let options: CreationChallengeResponse = serde_json::from_value(c.options.clone()).unwrap();
    let credential = key.do_registration(origin(&c), options).unwrap();
    let (status, body) = server
        .post(
            "/v1/auth/mfa/setup/webauthn",
            None,
            json!({ "ticket": t.ticket, "credential": credential }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let enrolled: MfaEnrolled = serde_json::from_value(body).unwrap();
    assert_eq!(enrolled.recovery_codes.len(), 10);
    assert_eq!(
        server
            .get("/v1/appointments", enrolled.session.session_token.expose())
            .await
            .0,
        200
    );

    // Next sign-in: the key signs the server's challenge.
    let t = ticket_of(password_step(&server, &device, "clinician", password).await);
    assert_eq!(
        t.methods,
        vec![MfaMethod::Webauthn, MfaMethod::RecoveryCode]
    );
    let (status, _) = totp(&server, t.ticket.expose(), "123456").await;
    assert_eq!(status, 401, "no TOTP was set up");
    let c = webauthn_challenge(
        &server,
        "/v1/auth/mfa/webauthn/challenge",
        t.ticket.expose(),
    )
    .await;
    let options: RequestChallengeResponse = serde_json::from_value(c.options.clone()).unwrap();
    let assertion = key.do_authentication(origin(&c), options.clone()).unwrap();
    let (status, body) = server
        .post(
            "/v1/auth/mfa/webauthn",
            None,
            json!({ "ticket": t.ticket, "credential": assertion }),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Another user's key (the front desk's, answering the front desk's own challenge) or a
    // replayed assertion is refused...
    let mut theirs = SoftPasskey::new(true);
    let f = ticket_of(
        password_step(
            &server,
            &device,
            "frontdesk",
            password_of(&report, "frontdesk"),
        )
        .await,
    );
    let c = webauthn_challenge(
        &server,
        "/v1/auth/mfa/setup/webauthn/challenge",
        f.ticket.expose(),
    )
    .await;
    let options: CreationChallengeResponse = serde_json::from_value(c.options.clone()).unwrap();
    let credential = theirs.do_registration(origin(&c), options).unwrap();
    let (status, body) = server
        .post(
            "/v1/auth/mfa/setup/webauthn",
            None,
            json!({ "ticket": f.ticket, "credential": credential }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let f = ticket_of(
        password_step(
            &server,
            &device,
            "frontdesk",
            password_of(&report, "frontdesk"),
        )
        .await,
    );
    let c = webauthn_challenge(
        &server,
        "/v1/auth/mfa/webauthn/challenge",
        f.ticket.expose(),
    )
    .await;
    let options: RequestChallengeResponse = serde_json::from_value(c.options.clone()).unwrap();
    let foreign = theirs.do_authentication(origin(&c), options).unwrap();
    let t = ticket_of(password_step(&server, &device, "clinician", password).await);
    webauthn_challenge(
        &server,
        "/v1/auth/mfa/webauthn/challenge",
        t.ticket.expose(),
    )
    .await;
    let (status, _) = server
        .post(
            "/v1/auth/mfa/webauthn",
            None,
            json!({ "ticket": t.ticket, "credential": foreign }),
        )
        .await;
    assert_eq!(status, 401, "another user's key");
    let (status, _) = server
        .post(
            "/v1/auth/mfa/webauthn",
            None,
            json!({ "ticket": t.ticket, "credential": assertion }),
        )
        .await;
    assert_eq!(status, 401, "an assertion over an earlier challenge");
    // ...and so is one for another origin: a subdomain is one the authenticator accepts
    // for the RP id, but it is not the server's origin.
    let t = ticket_of(password_step(&server, &device, "clinician", password).await);
    let c = webauthn_challenge(
        &server,
        "/v1/auth/mfa/webauthn/challenge",
        t.ticket.expose(),
    )
    .await;
    let options: RequestChallengeResponse = serde_json::from_value(c.options.clone()).unwrap();
    let sibling = Url::parse("https://portal.localhost").unwrap();
    let elsewhere = key.do_authentication(sibling, options.clone()).unwrap();
    let (status, _) = server
        .post(
            "/v1/auth/mfa/webauthn",
            None,
            json!({ "ticket": t.ticket, "credential": elsewhere }),
        )
        .await;
    assert_eq!(status, 401);
    let good = key.do_authentication(origin(&c), options).unwrap();
    let (status, body) = server
        .post(
            "/v1/auth/mfa/webauthn",
            None,
            json!({ "ticket": t.ticket, "credential": good }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}
