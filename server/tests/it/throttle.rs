//! Sign-in throttling through the real API: per account (known or not) and per client
//! address, kept in the database, lifted by time, cleared by a completed sign-in; failed
//! sign-ins and lockouts of real accounts recorded in the trail.

use clinicdesk_protocol::audit::{AuditAction, AuditEvent};
use clinicdesk_protocol::mfa::LoginStep;
use clinicdesk_server::sign_in::throttle::{ACCOUNT_LIMIT, ADDRESS_LIMIT, LOCKOUT_MS};
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
        server
            .get("/v1/appointments", login.session_token.expose())
            .await
            .0,
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
            LoginStep::SecondFactor(t) => t.ticket.expose().to_owned(),
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

/// The server's `login` events once there are at least `n` (failed sign-ins are recorded
/// off the request path, a moment after the answer).
async fn logins_at_least(server: &TestServer, n: usize) -> Vec<AuditEvent> {
    for _ in 0..200 {
        let events = server.events_of("login").await;
        if events.len() >= n {
            return events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("fewer than {n} login events were recorded");
}

#[tokio::test]
async fn failed_sign_ins_and_lockouts_of_real_accounts_are_in_the_trail() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login,
    } = server.signed_in(CLINIC, "clinician").await;
    let clinician = login.user.user_id;
    let password = password_of(&report, "clinician");

    // A wrong code after the right password: a failure on the second-factor step.
    let (_, body) = device.try_login(&server, "clinician", password).await;
    let LoginStep::SecondFactor(ticket) = serde_json::from_value(body).unwrap() else {
        panic!("expected a second-factor step");
    };
    let (status, _) = server
        .post(
            "/v1/auth/mfa/totp",
            None,
            json!({ "ticket": ticket.ticket, "code": "000000" }),
        )
        .await;
    assert_eq!(status, 401);
    let events = logins_at_least(&server, 1).await;
    assert_eq!(events[0].route, "/v1/auth/mfa/totp");

    // Wrong passwords until the account locks (the code above counted as one): each is a
    // failure, and the one that locks adds the lockout. An unknown name is not recorded.
    for _ in 1..ACCOUNT_LIMIT {
        device.try_login(&server, "clinician", "CANARY-wrong").await;
        device
            .try_login(&server, "CANARY-nobody", "CANARY-wrong")
            .await;
    }
    let events = logins_at_least(&server, usize::try_from(ACCOUNT_LIMIT).unwrap() + 1).await;
    // (Recorded in the background, so in whichever order the writes came.)
    let mut kinds: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.route.as_str(),
                e.resource_type.as_str(),
                e.outcome.as_str(),
            )
        })
        .collect();
    kinds.sort_unstable();
    let mut expected = vec![("/v1/auth/mfa/totp", "Account", "failure")];
    for _ in 1..ACCOUNT_LIMIT {
        expected.push(("/v1/auth/login", "Account", "failure"));
    }
    expected.push(("/v1/auth/login", "AccountLockout", "denied"));
    expected.sort_unstable();
    assert_eq!(kinds, expected);
    for e in &events {
        assert_eq!(e.action, AuditAction::Login);
        assert_eq!(
            (e.actor_user_id, e.resource_id.clone()),
            (clinician, clinician.to_string())
        );
        let seen = e.request.as_ref().unwrap();
        assert_eq!(seen.session_device_id, Some(device.id));
        assert_eq!(seen.client_ip, "127.0.0.1");
        assert!(!serde_json::to_string(e).unwrap().contains("CANARY"));
    }

    // While locked, refused requests prove nothing and add nothing.
    let answer = device.try_login(&server, "clinician", password).await;
    assert!(locked_out(&answer));
    // A later failure of another account is the marker: once its event is stored, a record
    // the locked-out attempt had started (earlier, on the same write turn) would be too.
    device.try_login(&server, "frontdesk", "wrong").await;
    let after = logins_at_least(&server, events.len() + 1).await;
    let new: Vec<_> = after
        .iter()
        .filter(|e| !events.iter().any(|old| old.id == e.id))
        .map(|e| (e.actor_user_id, e.resource_type.as_str()))
        .collect();
    assert_eq!(new.len(), 1, "only the marker was recorded: {new:?}");
    assert_ne!(new[0].0, clinician, "nothing of the locked-out attempt");
}

/// Concurrent guesses cannot outrun the count: each attempt is reserved before its answer
/// is checked, so of 60 wrong passwords for one account sent at once at most the account's
/// limit are evaluated (the rest are refused as too many before any password is checked),
/// and of 30 wrong codes sent at once on one ticket at most the ticket's limit are.
/// (Workstations hold a few live login nonces each, so the 60 come from ten of them.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_guesses_are_counted_before_they_are_checked() {
    use clinicdesk_server::sign_in::mfa::MAX_TICKET_FAILURES;
    use futures_util::future::join_all;

    let server = TestServer::start().await;
    let SignedIn { report, device, .. } = server.signed_in(CLINIC, "clinician").await;
    let mut devices = vec![device];
    for _ in 1..10 {
        devices.push(server.enroll_another(report.clinic_id).await);
    }

    // 30 wrong codes on one ticket, all at once.
    let (status, body) = devices[0]
        .try_login(&server, "clinician", password_of(&report, "clinician"))
        .await;
    assert_eq!(status, 200, "{body}");
    let LoginStep::SecondFactor(ticket) = serde_json::from_value(body).unwrap() else {
        panic!("expected a second-factor step");
    };
    let guesses = (0..30).map(|_| {
        server.post(
            "/v1/auth/mfa/totp",
            None,
            json!({ "ticket": ticket.ticket, "code": "000000" }),
        )
    });
    let answers = join_all(guesses).await;
    assert!(
        answers
            .iter()
            .all(|(status, _)| [401, 429].contains(status))
    );
    // Each evaluated code is a failure in the trail; a refused one proves nothing. They are
    // recorded off the request path: count once the count has stopped growing, so that a
    // late one is not missed.
    let code_failures = || async {
        server
            .events_of("login")
            .await
            .iter()
            .filter(|e| e.resource_type == "Account" && e.route == "/v1/auth/mfa/totp")
            .count()
    };
    let (mut evaluated, mut steady) = (code_failures().await, 0);
    for _ in 0..200 {
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        let now = code_failures().await;
        steady = if now == evaluated && now > 0 {
            steady + 1
        } else {
            0
        };
        evaluated = now;
        if steady == 10 {
            break;
        }
    }
    assert!(
        (1..=usize::try_from(MAX_TICKET_FAILURES).unwrap()).contains(&evaluated),
        "{evaluated} of 30 concurrent codes were checked"
    );

    // 60 wrong passwords for another account, all at once.
    let attempts = devices
        .iter()
        .flat_map(|d| (0..6).map(|_| d.try_login(&server, "frontdesk", "CANARY-wrong")));
    let answers = join_all(attempts).await;
    let checked = answers.iter().filter(|(status, _)| *status == 401).count();
    let refused = answers.iter().filter(|a| locked_out(a)).count();
    assert_eq!(checked + refused, 60, "{answers:?}");
    assert!(
        (1..=usize::try_from(ACCOUNT_LIMIT).unwrap()).contains(&checked),
        "{checked} of 60 concurrent passwords were checked"
    );
    // As many password failures in the trail as were checked, and the lockout (recorded
    // off the request path: wait for them, counting this route's only, as the code
    // failures above may still be landing).
    let on_login = |events: &[AuditEvent], kind: &str| {
        events
            .iter()
            .filter(|e| e.route == "/v1/auth/login" && e.resource_type == kind)
            .count()
    };
    let mut events = Vec::new();
    for _ in 0..200 {
        events = server.events_of("login").await;
        if on_login(&events, "Account") >= checked && on_login(&events, "AccountLockout") >= 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(
        (
            on_login(&events, "Account"),
            on_login(&events, "AccountLockout")
        ),
        (checked, 1)
    );
}
