//! What a workstation may claim in the trail (issue 22, "What a workstation may claim"): an
//! insider holding a workstation's key signs events of their own making. Before, ingest
//! checked only that the actor was a user of the clinic: "the front desk viewed patient P",
//! signed on a workstation the front desk never used, was stored and shown in P's access
//! report; so was an event dated a year before the workstation existed, or a role its user
//! never had there, with nothing to tell them apart.

use clinicdesk_protocol::audit::Hash32;
use clinicdesk_protocol::export::PatientAccessReport;
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::AuditAlerts;
use clinicdesk_server::audit::key::PublicKey;
use clinicdesk_server::time::Clock;
use uuid::Uuid;

use crate::audit_log::{event, sign, upload};
use crate::harness::{SignedIn, TestServer, password_of};

const CLINIC: u128 = 0xC1A1;
const DAY_MS: i64 = 86_400_000;

#[tokio::test]
async fn a_workstation_speaks_only_for_who_signed_in_on_it_and_doubtful_claims_are_flagged() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login,
    } = server.signed_in(CLINIC, "clinician").await;
    let clinic = report.clinic_id;
    let clinician = login.user.user_id;
    // The front desk signed in on another workstation, never on this one.
    let desk = server.enroll_another(clinic).await;
    let front_desk = desk
        .login(&server, "frontdesk", password_of(&report, "frontdesk"))
        .await
        .user
        .user_id;
    let admin = device
        .login(&server, "admin", password_of(&report, "admin"))
        .await;
    let patient: Uuid =
        sqlx::query_scalar::<_, String>("SELECT min(id) FROM patients WHERE clinic_id = $1")
            .bind(clinic.to_string())
            .fetch_one(&server.owner_pool().await)
            .await
            .unwrap()
            .parse()
            .unwrap();
    let now = server.clock.now_ms();
    let view = |seq: u64, prev: Hash32, actor: Uuid, role: Role, at: i64| {
        let mut e = event(&device, actor, seq, prev);
        e.actor_role = role;
        e.occurred_at_ms = at;
        e.patient_id = Some(patient);
        sign(&device, e)
    };

    // As signed in: stored, nothing flagged.
    let honest = view(1, Hash32::GENESIS, clinician, Role::Clinician, now);
    assert_eq!(
        upload(&server, &device, &[&honest])
            .await
            .highest_contiguous_seq,
        1
    );
    // Someone who never signed in here: refused from the chain, kept as a tamper alert.
    let forged = view(2, honest.event.hash(), front_desk, Role::FrontDesk, now);
    let r = upload(&server, &device, &[&forged]).await;
    assert_eq!((r.highest_contiguous_seq, r.forked.clone()), (1, vec![2]));
    // A role the sign-in did not grant, a time a year before the workstation was enrolled,
    // and one an hour ahead of the server: stored (a wrong clock loses nothing), flagged.
    let promoted = view(2, honest.event.hash(), clinician, Role::Admin, now);
    let backdated = view(
        3,
        promoted.event.hash(),
        clinician,
        Role::Clinician,
        now - 365 * DAY_MS,
    );
    let ahead = view(
        4,
        backdated.event.hash(),
        clinician,
        Role::Clinician,
        now + 3_600_000,
    );
    server.clock.advance_ms(60_000);
    let r = upload(&server, &device, &[&promoted, &backdated, &ahead]).await;
    assert_eq!((r.highest_contiguous_seq, r.forked.clone()), (4, vec![]));

    let (status, body) = server
        .get("/v1/audit/alerts", admin.session_token.expose())
        .await;
    assert_eq!(status, 200, "{body}");
    let alerts: AuditAlerts = serde_json::from_value(body).unwrap();
    let refused: Vec<_> = alerts
        .tamper
        .iter()
        .map(|t| (t.device_seq, t.kind.as_str()))
        .collect();
    assert_eq!(refused, vec![(2, "unknown_actor")]);
    let mut flagged: Vec<_> = alerts
        .flagged_claims
        .iter()
        .map(|c| (c.device_seq, c.event_id, c.doubted.clone()))
        .collect();
    flagged.sort();
    assert_eq!(
        flagged,
        vec![
            (2, promoted.event.id, vec!["actor_role".to_owned()]),
            (3, backdated.event.id, vec!["occurred_at_ms".to_owned()]),
            (4, ahead.event.id, vec!["occurred_at_ms".to_owned()]),
        ]
    );
    assert!(
        alerts
            .flagged_claims
            .iter()
            .all(|c| c.received_at_ms == now + 60_000)
    );

    // The patient's access report: never the forged view; each access with its receipt
    // time; by receipt, the backdated view is among the newest, not a year down the list.
    let report_of = |order: &'static str| {
        let server = &server;
        let token = admin.session_token.expose().to_owned();
        async move {
            let (status, body) = server
                .get(
                    &format!("/v1/audit/patients/{patient}/report?order={order}"),
                    &token,
                )
                .await;
            assert_eq!(status, 200, "{body}");
            serde_json::from_value::<PatientAccessReport>(body).unwrap()
        }
    };
    let views = |r: &PatientAccessReport| -> Vec<Uuid> {
        r.accesses
            .iter()
            .filter(|a| a.event.device_id == device.id)
            .map(|a| a.event.id)
            .collect()
    };
    let by_time = report_of("occurred").await;
    assert_eq!(
        views(&by_time),
        vec![
            ahead.event.id,
            promoted.event.id,
            honest.event.id,
            backdated.event.id
        ]
    );
    assert!(
        by_time
            .accesses
            .iter()
            .all(|a| a.received_at_ms.is_some_and(|at| at >= now))
    );
    let by_receipt = report_of("received").await;
    assert_eq!(
        views(&by_receipt),
        vec![
            ahead.event.id,
            promoted.event.id,
            backdated.event.id,
            honest.event.id
        ]
    );
    assert!(!views(&by_receipt).contains(&forged.event.id));

    // Flags and the alert are leaves of the log: the trail still verifies.
    let key = PublicKey::from_hex(&device.audit_public_key).unwrap();
    crate::harness::verify_trail(&server.store, &key, &[])
        .await
        .unwrap();

    // The same checks on a later batch: a re-sent forged event is refused again, once.
    let r = upload(&server, &device, &[&forged]).await;
    assert_eq!(r.highest_contiguous_seq, 4);
    let (_, body) = server
        .get("/v1/audit/alerts", admin.session_token.expose())
        .await;
    let alerts: AuditAlerts = serde_json::from_value(body).unwrap();
    assert_eq!(alerts.tamper.len(), 1);
}

/// The role a workstation claims is judged against the role in force at the event's time,
/// not only the role the actor signed in with (issue 22: "its role must be the user's role
/// at that time"). A clinician reads cached charts offline; meanwhile an admin makes them
/// billing (their sessions end, but the offline workstation cannot know). Their later views,
/// signed as clinician, are flagged; the ones before the change are not, and a view after
/// they sign in again as billing, with that role, is not either. Before, only the sign-in
/// was consulted, and the views after the demotion were stored unflagged.
#[tokio::test]
async fn a_role_claimed_after_an_admin_changed_it_is_flagged() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login,
    } = server.signed_in(CLINIC, "clinician").await;
    let clinician = login.user.user_id;
    let desk = server.enroll_another(report.clinic_id).await;
    let admin = desk
        .login(&server, "admin", password_of(&report, "admin"))
        .await;
    let view = |seq: u64, prev: Hash32, role: Role, at: i64| {
        let mut e = event(&device, clinician, seq, prev);
        e.actor_role = role;
        e.occurred_at_ms = at;
        e.offline = true;
        sign(&device, e)
    };
    let minute = 60_000;
    let start = server.clock.now_ms();
    let before = view(1, Hash32::GENESIS, Role::Clinician, start + minute);

    server.clock.advance_ms(10 * minute);
    let (status, body) = server
        .post(
            &format!("/v1/users/{clinician}/role"),
            Some(admin.session_token.expose()),
            serde_json::json!({ "role": "billing" }),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    // Well past the change and its clock skew.
    let after = view(2, before.event.hash(), Role::Clinician, start + 20 * minute);
    server.clock.advance_ms(20 * minute);
    // Back online, signed in again: as billing now.
    device
        .login(&server, "clinician", password_of(&report, "clinician"))
        .await;
    let as_billing = view(3, after.event.hash(), Role::Billing, server.clock.now_ms());
    let r = upload(&server, &device, &[&before, &after, &as_billing]).await;
    assert_eq!((r.highest_contiguous_seq, r.forked.clone()), (3, vec![]));

    let admin = desk
        .login(&server, "admin", password_of(&report, "admin"))
        .await;
    let (_, body) = server
        .get("/v1/audit/alerts", admin.session_token.expose())
        .await;
    let alerts: AuditAlerts = serde_json::from_value(body).unwrap();
    let flagged: Vec<_> = alerts
        .flagged_claims
        .iter()
        .filter(|c| c.device_id == device.id)
        .map(|c| (c.event_id, c.doubted.clone()))
        .collect();
    assert_eq!(
        flagged,
        vec![(after.event.id, vec!["actor_role".to_owned()])]
    );
}
