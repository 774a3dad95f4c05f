//! The device registry through the real API: admins issue enrollment codes, list the
//! clinic's workstations (who let each in, last seen, app version, audit standing) and
//! revoke them; each revocation is recorded on the server chain.

use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_protocol::wire::{DeviceList, DeviceSummary, EnrollmentCodeIssued};
use serde_json::json;

use crate::audit_log::{chain, upload};
use crate::harness::{HARNESS_APP_VERSION, SignedIn, TestDevice, TestServer, password_of};

async fn devices(server: &TestServer, token: &str) -> Vec<DeviceSummary> {
    let (status, body) = server.get("/v1/devices", token).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value::<DeviceList>(body).unwrap().devices
}

#[tokio::test]
async fn admins_issue_codes_list_workstations_and_revoke_them() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device: front,
        login: admin,
    } = server.signed_in(0xA, "admin").await;

    // Only admins issue codes and see the list.
    let clinician = front
        .login(&server, "clinician", password_of(&report, "clinician"))
        .await;
    for (method, path) in [
        ("POST", "/v1/devices/enrollment-codes"),
        ("GET", "/v1/devices"),
    ] {
        let status = match method {
            "POST" => {
                server
                    .post(path, Some(clinician.session_token.expose()), json!({}))
                    .await
                    .0
            }
            _ => server.get(path, clinician.session_token.expose()).await.0,
        };
        assert_eq!(status, 403, "{method} {path}");
    }

    let (status, body) = server
        .post(
            "/v1/devices/enrollment-codes",
            Some(admin.session_token.expose()),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let issued: EnrollmentCodeIssued = serde_json::from_value(body).unwrap();
    assert!(!format!("{issued:?}").contains(issued.enrollment_code.expose()));
    let back = TestDevice::enroll(&server, issued.enrollment_code.expose()).await;
    let (status, _) = server
        .post(
            "/v1/devices/enroll",
            None,
            crate::harness::enroll_body(
                issued.enrollment_code.expose(),
                "Again",
                &ed25519_dalek::SigningKey::from_bytes(&crate::harness::rand32()),
            ),
        )
        .await;
    assert_eq!(status, 401, "a code works once");
    // Each enrollment is on the server chain: by the admin who issued the code, or by the
    // operator's console (the nil id), with the address it came from; the refused second
    // use of the code recorded nothing.
    let enrolled = server.events_of("device_enrolled").await;
    let actors: Vec<_> = enrolled
        .iter()
        .map(|e| (e.resource_id.clone(), e.actor_user_id))
        .collect();
    assert_eq!(
        actors,
        [
            (front.id.to_string(), uuid::Uuid::nil()),
            (back.id.to_string(), admin.user.user_id),
        ]
    );
    let seen = enrolled[1].request.as_ref().unwrap();
    assert_eq!(seen.client_ip, "127.0.0.1");
    assert_eq!(seen.session_device_id, Some(back.id));

    // The back-office workstation signs in (reporting its app version) and uploads a trail
    // with a gap: 1, 2, then 5.
    server.clock.advance_ms(60_000);
    let signed_in = back
        .login(&server, "clinician", password_of(&report, "clinician"))
        .await;
    let events = chain(&back, signed_in.user.user_id, 5);
    // An upload is a sign of life too, written in the upload's own transaction.
    server.clock.advance_ms(60_000);
    upload(&server, &back, &[&events[0], &events[1], &events[4]]).await;
    let uploaded_at =
        clinicdesk_server::time::rfc3339(clinicdesk_server::time::Clock::now_ms(&server.clock))
            .unwrap();

    let list = devices(&server, admin.session_token.expose()).await;
    assert_eq!(list.len(), 2);
    let of = |id| list.iter().find(|d| d.id == id).unwrap().clone();
    let (front_row, back_row) = (of(front.id), of(back.id));
    assert_eq!(
        front_row.enrolled_by, None,
        "the operator's console issued its code"
    );
    assert_eq!(back_row.enrolled_by.as_deref(), Some("Alex Admin (demo)"));
    assert_eq!(back_row.app_version.as_deref(), Some(HARNESS_APP_VERSION));
    assert_eq!(back_row.last_seen_at, Some(uploaded_at));
    assert_eq!(
        (back_row.audit_contiguous_seq, back_row.audit_outstanding),
        (2, 2)
    );
    assert_eq!(
        (front_row.audit_contiguous_seq, front_row.audit_outstanding),
        (0, 0)
    );
    assert_eq!(front_row.revoked_at, None);

    // Revoked: listed after the active ones, with the time; the revocation is on the
    // server chain with the admin as its actor.
    let (status, _) = server
        .post(
            &format!("/v1/devices/{}/revoke", back.id),
            Some(admin.session_token.expose()),
            json!({}),
        )
        .await;
    assert_eq!(status, 204);
    let list = devices(&server, admin.session_token.expose()).await;
    assert_eq!(
        list.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![front.id, back.id]
    );
    assert!(list[1].revoked_at.is_some());
    let revoked = server.events_of("device_revoked").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].action, AuditAction::DeviceRevoked);
    assert_eq!(revoked[0].actor_user_id, admin.user.user_id);
    assert_eq!(revoked[0].resource_id, back.id.to_string());

    // Another clinic's admin sees only their own workstation.
    let other = server.signed_in(0xB, "admin").await;
    let theirs = devices(&server, other.login.session_token.expose()).await;
    assert_eq!(
        theirs.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![other.device.id]
    );
}

#[tokio::test]
async fn a_malformed_app_version_is_refused_by_name() {
    let server = TestServer::start().await;
    let report = server.seed(0xA, "Clinic A").await;
    let device = TestDevice::enroll(&server, &report.enrollment_code).await;
    let (_, body) = server
        .post(
            "/v1/auth/challenge",
            None,
            json!({ "device_id": device.id }),
        )
        .await;
    let nonce = body["nonce"].as_str().unwrap().to_owned();
    use ed25519_dalek::Signer;
    let signature = device
        .key
        .sign(&clinicdesk_protocol::wire::login_proof_bytes(
            &nonce,
            device.id,
            "clinician",
        ));
    let (status, body) = server
        .post(
            "/v1/auth/login",
            None,
            json!({
                "username": "clinician",
                "password": password_of(&report, "clinician"),
                "device_id": device.id,
                "nonce": nonce,
                "device_signature": clinicdesk_protocol::audit::to_hex(&signature.to_bytes()),
                "app_version": "CANARY version\n",
            }),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({ "code": "bad_request", "field": "app_version" })
        )
    );
}

/// A revocation and its `device_revoked` event commit together or not at all: when the
/// event cannot be stored, the device stays live (and the admin is told), so no workstation
/// is ever revoked without a record of who revoked it.
#[tokio::test]
async fn a_revocation_without_its_audit_event_does_not_happen() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        login: admin,
        ..
    } = server.signed_in(0xA, "admin").await;
    let back = server.enroll_another(uuid::Uuid::from_u128(0xA)).await;
    let revoke = format!("/v1/devices/{}/revoke", back.id);
    let token = admin.session_token.expose();

    // The trail refuses new events, as a full disk or a broken connection would.
    let owner = server.owner_pool().await;
    let (block, unblock) = match server.store.backend() {
        clinicdesk_server::store::Backend::Sqlite => (
            "CREATE TRIGGER audit_events_refused BEFORE INSERT ON audit_events \
             BEGIN SELECT RAISE(ABORT, 'refused'); END",
            "DROP TRIGGER audit_events_refused",
        ),
        clinicdesk_server::store::Backend::Postgres => (
            "REVOKE INSERT ON audit_events FROM clinicdesk_app",
            "GRANT INSERT ON audit_events TO clinicdesk_app",
        ),
    };
    sqlx::query(block).execute(&owner).await.unwrap();
    let (status, body) = server.post(&revoke, Some(token), json!({})).await;
    sqlx::query(unblock).execute(&owner).await.unwrap();
    assert_eq!((status, body["code"].as_str()), (500, Some("internal")));
    let listed = devices(&server, token).await;
    let row = listed.iter().find(|d| d.id == back.id).unwrap();
    assert_eq!(row.revoked_at, None, "revoked without its event");
    let clinician = back
        .login(&server, "clinician", password_of(&report, "clinician"))
        .await;
    assert!(!clinician.session_token.expose().is_empty());

    // With the trail back, the revocation happens, with its event.
    let (status, body) = server.post(&revoke, Some(token), json!({})).await;
    assert_eq!(status, 204, "{body}");
    let revoked = server.events_of("device_revoked").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].resource_id, back.id.to_string());
}

/// A revocation on the operator's console is in the trail like an admin's, by the console
/// (the nil user), in the same transaction as the revocation.
#[tokio::test]
async fn the_operators_revocation_on_the_console_is_in_the_trail() {
    let server = TestServer::start().await;
    let report = server.seed(0xA, "Clinic A").await;
    let device = TestDevice::enroll(&server, &report.enrollment_code).await;
    crate::harness::cli_ok(
        &server,
        &["revoke-device", "--device", &device.id.to_string()],
    );
    let revocations: Vec<_> = server
        .events_of("device_revoked")
        .await
        .into_iter()
        .filter(|e| e.resource_id == device.id.to_string())
        .collect();
    assert_eq!(
        revocations.len(),
        1,
        "the console's revocation is recorded once"
    );
    assert_eq!(revocations[0].actor_user_id, uuid::Uuid::nil());
    assert_eq!(
        revocations[0].request.as_ref().unwrap().client_ip,
        "console"
    );
}

async fn put_copy(
    server: &TestServer,
    token: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    server
        .put("/v1/devices/this/offline-copy", token, body)
        .await
}

/// "What is on this workstation": each user's session says how many patients and days
/// their offline copy there holds; the admins' devices list shows each workstation's
/// copies together (users, patients, when), counts only. A new report replaces the user's
/// last; a sign-out, which removes the copy, removes it from the count; a lock does not.
#[tokio::test]
async fn the_devices_list_counts_what_each_workstations_offline_copies_hold() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login: admin,
    } = server.signed_in(0xC0, "admin").await;
    let admin = admin.session_token.expose().to_owned();
    let front = device
        .login(&server, "frontdesk", password_of(&report, "frontdesk"))
        .await;
    let clinician = device
        .login(&server, "clinician", password_of(&report, "clinician"))
        .await;
    let held = |list: Vec<DeviceSummary>| {
        list.into_iter()
            .find(|d| d.id == device.id)
            .unwrap()
            .offline_copy
            .map(|c| (c.users, c.patients))
    };
    assert_eq!(
        held(devices(&server, &admin).await),
        None,
        "nothing said yet"
    );

    let (status, body) = put_copy(
        &server,
        front.session_token.expose(),
        json!({ "patients": 12, "days": 9 }),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(held(devices(&server, &admin).await), Some((1, 12)));
    let (status, _) = put_copy(
        &server,
        clinician.session_token.expose(),
        json!({ "patients": 3, "days": 9 }),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(held(devices(&server, &admin).await), Some((2, 15)));
    // A later refresh replaces the front desk's count.
    let (status, _) = put_copy(
        &server,
        front.session_token.expose(),
        json!({ "patients": 10, "days": 9 }),
    )
    .await;
    assert_eq!(status, 204);
    let list = devices(&server, &admin).await;
    let copy = list
        .iter()
        .find(|d| d.id == device.id)
        .and_then(|d| d.offline_copy.clone())
        .unwrap();
    assert_eq!((copy.users, copy.patients), (2, 13));
    assert!(copy.reported_at.ends_with('Z'), "{}", copy.reported_at);

    // Nonsense is refused by name and changes nothing.
    for (body, field) in [
        (
            json!({ "patients": 20_000_000, "days": 9 }),
            Some("patients"),
        ),
        (json!({ "patients": 1, "days": -1 }), None),
        (json!({ "patients": 1, "days": 1, "names": ["x"] }), None),
    ] {
        let (status, answer) = put_copy(&server, front.session_token.expose(), body).await;
        assert_eq!(status, 400, "{answer}");
        if field.is_some() {
            assert_eq!(answer["field"].as_str(), field);
        }
    }
    assert_eq!(held(devices(&server, &admin).await), Some((2, 13)));

    // The front desk signs out: the app removes their copy and says it holds nothing,
    // then ends the session. Only the clinician's copy is counted.
    let (status, _) = put_copy(
        &server,
        front.session_token.expose(),
        json!({ "patients": 0, "days": 0 }),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(held(devices(&server, &admin).await), Some((1, 3)));
    // A lock ends the server session and keeps the copy, and its count.
    let (status, _) = server
        .post(
            "/v1/auth/logout",
            Some(clinician.session_token.expose()),
            json!({}),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(held(devices(&server, &admin).await), Some((1, 3)));
}
