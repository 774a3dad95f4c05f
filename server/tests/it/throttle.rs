//! Sign-in throttling through the real API: per account (known or not) and per client
//! address, kept in the database, lifted by time, cleared by a completed sign-in.

use clinicdesk_protocol::mfa::LoginStep;
use clinicdesk_server::throttle::{ACCOUNT_LIMIT, ADDRESS_LIMIT, LOCKOUT_MS};
use serde_json::{Value, json};

use crate::harness::{SignedIn, TestDevice, TestServer, password_of};

const CLINIC: u128 = 0xA;

fn locked_out(answer: &(u16, Value)) -> bool {
    answer.0 == 429 && answer.1 == json!({ "code": "too_many_attempts" })
}

#[tokio::test]
async fn wrong_answers_lock_the_account_out_for_a_while_whoever_asks() {
    let server = TestServer::start().await;
    let report = server.seed(CLINIC, "Clinic A").await;
    let device = TestDevice::enroll(&server, &report.enrollment_code).await;
    let password = password_of(&report, "clinician");

    for user in ["clinician", "CANARY-nobody"] {
        for _ in 0..ACCOUNT_LIMIT {
            let answer = device.try_login(&server, user, "CANARY-wrong").await;
            assert_eq!(answer.0, 401, "{}", answer.1);
        }
        // Locked: even the right password is not checked, for a real account and an
        // unknown one alike.
        let answer = device.try_login(&server, user, password).await;
        assert!(locked_out(&answer), "{user}: {answer:?}");
        assert!(!answer.1.to_string().contains("CANARY"));
    }
    // Another account from the same workstation is not affected.
    let (status, _) = device
        .try_login(&server, "frontdesk", password_of(&report, "frontdesk"))
        .await;
    assert_eq!(status, 200);

    // The lockout ends with its time; a completed sign-in then starts the count afresh.
    server.clock.advance_ms(LOCKOUT_MS);
    let login = device.login(&server, "clinician", password).await;
    assert_eq!(
        server.get("/v1/appointments", &login.session_token).await.0,
        200
    );
    for _ in 0..ACCOUNT_LIMIT - 1 {
        device.try_login(&server, "clinician", "wrong").await;
    }
    let (status, _) = device.try_login(&server, "clinician", password).await;
    assert_eq!(status, 200, "four failures after a sign-in do not lock");

    // The lockout says how long it lasts.
    device.try_login(&server, "clinician", "wrong").await;
    server.clock.advance_ms(60_000);
    let resp = device
        .login_response(&server, "clinician", password, None)
        .await;
    assert_eq!(resp.status().as_u16(), 429);
    let retry_after: i64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry_after, (LOCKOUT_MS - 60_000) / 1000);
}

#[tokio::test]
async fn second_factor_guesses_across_tickets_lock_the_account() {
    let server = TestServer::start().await;
    let SignedIn { report, device, .. } = server.signed_in(CLINIC, "clinician").await;
    let password = password_of(&report, "clinician");
    let ticket = || async {
        let (status, body) = device.try_login(&server, "clinician", password).await;
        assert_eq!(status, 200, "{body}");
        match serde_json::from_value::<LoginStep>(body).unwrap() {
            LoginStep::SecondFactor(t) => t.ticket,
            other => panic!("expected a second-factor step, got {other:?}"),
        }
    };
    let guess = |ticket: String| {
        let server = &server;
        async move {
            server
                .post(
                    "/v1/auth/mfa/totp",
                    None,
                    json!({ "ticket": ticket, "code": "000000" }),
                )
                .await
        }
    };
    // Wrong codes spread over fresh tickets still add up for the account.
    let mut failures = 0;
    let mut last = (0, Value::Null);
    while failures < ACCOUNT_LIMIT {
        let t = ticket().await;
        for _ in 0..2 {
            if failures == ACCOUNT_LIMIT {
                break;
            }
            last = guess(t.clone()).await;
            failures += 1;
        }
        if failures < ACCOUNT_LIMIT {
            assert_eq!(last.0, 401, "{}", last.1);
        }
    }
    // The guess that reached the limit is refused like the others; from then on the account
    // is locked out at the password step and at the code step.
    assert_eq!(last.0, 401);
    let answer = device.try_login(&server, "clinician", password).await;
    assert!(locked_out(&answer), "{answer:?}");
}

#[tokio::test]
async fn an_address_sending_many_wrong_passwords_is_locked_out() {
    let server = TestServer::start().await;
    let report = server.seed(CLINIC, "Clinic A").await;
    let device = TestDevice::enroll(&server, &report.enrollment_code).await;
    // A spray: one wrong password for each of many usernames, all from 127.0.0.1.
    for i in 0..ADDRESS_LIMIT {
        let (status, _) = device
            .try_login(&server, &format!("spray-{i}"), "wrong")
            .await;
        assert_eq!(status, 401);
    }
    let answer = device
        .try_login(&server, "frontdesk", password_of(&report, "frontdesk"))
        .await;
    assert!(locked_out(&answer), "{answer:?}");
    server.clock.advance_ms(LOCKOUT_MS);
    let (status, _) = device
        .try_login(&server, "frontdesk", password_of(&report, "frontdesk"))
        .await;
    assert_eq!(status, 200);
}
