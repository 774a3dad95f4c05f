//! The audit trail end to end through real TLS: ingest with signed receipts, idempotence,
//! forks and gaps kept as alerts, the Merkle log's checkpoints and proofs checked by the
//! independent `ct-merkle` verifier, search by cursor, and the store verifier.

use clinicdesk_protocol::audit::{
    AuditAction, AuditEvent, Hash32, Outcome, SignedAuditEvent, to_hex,
};
use clinicdesk_protocol::merkle::{
    ConsistencyEvidence, InclusionEvidence, SignedCheckpoint, verify_consistency, verify_inclusion,
};
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::{AuditAlerts, AuditPage, AuditReceipt, ReceivedAfterRevocation};
use clinicdesk_server::audit::key::{PublicKey, verify_hex};
use ed25519_dalek::Signer;
use serde_json::json;
use uuid::Uuid;

use crate::harness::{SignedIn, TestDevice, TestServer, password_of};

const CLINIC_A: u128 = 0xA;

pub fn event(device: &TestDevice, user: Uuid, seq: u64, prev: Hash32) -> AuditEvent {
    AuditEvent {
        id: Uuid::now_v7(),
        clinic_id: device.clinic_id,
        actor_user_id: user,
        actor_role: Role::Clinician,
        recorded_by: clinicdesk_protocol::audit::Recorder::Device,
        device_id: device.id,
        device_seq: seq,
        action: AuditAction::View,
        resource_type: "Patient".into(),
        resource_id: "p".into(),
        patient_id: Some(Uuid::from_u128(99)),
        fields: vec!["name".into()],
        outcome: Outcome::Success,
        occurred_at_ms: crate::harness::START_MS + i64::try_from(seq).unwrap() * 1000,
        offline: false,
        route: "patient".into(),
        break_glass: None,
        request: None,
        prev_hash: prev,
        change: None,
    }
}

pub fn sign(device: &TestDevice, e: AuditEvent) -> SignedAuditEvent {
    SignedAuditEvent {
        signature: to_hex(&device.key.sign(&e.canonical_bytes()).to_bytes()),
        event: e,
    }
}

/// A chain of `n` signed events from sequence 1.
pub fn chain(device: &TestDevice, user: Uuid, n: u64) -> Vec<SignedAuditEvent> {
    let mut prev = Hash32::GENESIS;
    (1..=n)
        .map(|seq| {
            let e = sign(device, event(device, user, seq, prev));
            prev = e.event.hash();
            e
        })
        .collect()
}

pub async fn upload(
    server: &TestServer,
    device: &TestDevice,
    events: &[&SignedAuditEvent],
) -> AuditReceipt {
    let (status, body) = server
        .post(
            "/v1/audit/batches",
            None,
            json!({ "device_id": device.id, "events": events }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let receipt: AuditReceipt = serde_json::from_value(body).unwrap();
    // What the app does before forgetting anything: the pinned key signed it, and the
    // contiguous event is provably in the signed checkpoint.
    let key = PublicKey::from_hex(&device.audit_public_key).unwrap();
    assert!(verify_hex(
        &key,
        &receipt.canonical_bytes(),
        &receipt.signature
    ));
    assert!(verify_hex(
        &key,
        &receipt.checkpoint.checkpoint.canonical_bytes(),
        &receipt.checkpoint.signature
    ));
    receipt.check_inclusion().unwrap();
    receipt
}

/// How many leaves the clinic's log holds.
async fn leaves(server: &TestServer, clinic: Uuid) -> u64 {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE clinic_id = $1 AND leaf_index IS NOT NULL",
    )
    .bind(clinic.to_string())
    .fetch_one(&server.owner_pool().await)
    .await
    .unwrap();
    u64::try_from(n).unwrap()
}

#[tokio::test]
async fn ingest_answers_signed_receipts_and_keeps_forks_and_gaps_as_alerts() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login,
    } = server.signed_in(CLINIC_A, "clinician").await;
    let uid = login.user.user_id;
    let events = chain(&device, uid, 6);
    let e = |seq: usize| &events[seq - 1];
    let admin = device
        .login(&server, "admin", password_of(&report, "admin"))
        .await;
    // The log already holds the server's events of the enrollment and of the two sign-ins
    // (second factors set up).
    let (_, body) = server
        .get("/v1/audit/checkpoint", admin.session_token.expose())
        .await;
    let base = serde_json::from_value::<SignedCheckpoint>(body)
        .unwrap()
        .checkpoint
        .tree_size;
    assert_eq!(base, 3);
    // Each read of the trail is itself logged, after its answer: the log has grown by one.
    let clinic = report.clinic_id;
    assert_eq!(leaves(&server, clinic).await, base + 1);

    let before = leaves(&server, clinic).await;
    let r = upload(&server, &device, &[e(1), e(2)]).await;
    assert_eq!(
        (r.highest_contiguous_seq, r.contiguous_hash),
        (2, e(2).event.hash())
    );
    assert_eq!(r.checkpoint.checkpoint.tree_size, before + 2);
    assert!(r.forked.is_empty());
    let first_checkpoint = r.checkpoint.clone();

    // A re-send is accepted once: nothing new is stored or logged.
    let r = upload(&server, &device, &[e(2)]).await;
    assert_eq!(
        (r.highest_contiguous_seq, r.checkpoint.checkpoint.tree_size),
        (2, before + 2)
    );

    // A forged signature is refused outright.
    let mut forged = e(3).clone();
    forged.event.fields.push("phone".into());
    let (status, body) = server
        .post(
            "/v1/audit/batches",
            None,
            json!({ "device_id": device.id, "events": [forged] }),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_signature"))
    );

    // Past a gap the event is stored, the receipt does not move, the gap is outstanding.
    let r = upload(&server, &device, &[e(5)]).await;
    assert_eq!(r.highest_contiguous_seq, 2);
    let (status, body) = server
        .get("/v1/audit/alerts", admin.session_token.expose())
        .await;
    assert_eq!(status, 200, "{body}");
    let alerts: AuditAlerts = serde_json::from_value(body).unwrap();
    // No checkpoint is signed at the size this read's own event made.
    let unsigned = leaves(&server, clinic).await;
    assert_eq!(alerts.outstanding.len(), 1);
    assert_eq!(
        alerts.outstanding[0].to_string(),
        format!("device {} is missing 3 to 4", device.id)
    );

    // Filling the gap links across it and moves the receipt to 5.
    let r = upload(&server, &device, &[e(4), e(3)]).await;
    assert_eq!(
        (r.highest_contiguous_seq, r.contiguous_hash),
        (5, e(5).event.hash())
    );

    // A different event at a stored sequence is a fork: kept as an alert, never stored
    // as the chain; a wrong link after the tip is a chain break.
    let fork = sign(&device, event(&device, uid, 2, e(1).event.hash()));
    let bad_link = sign(&device, event(&device, uid, 6, Hash32([9; 32])));
    let r = upload(&server, &device, &[&fork, &bad_link]).await;
    assert_eq!(r.forked, vec![2, 6]);
    assert_eq!(r.highest_contiguous_seq, 5);
    let (_, body) = server
        .get("/v1/audit/alerts", admin.session_token.expose())
        .await;
    let alerts: AuditAlerts = serde_json::from_value(body).unwrap();
    assert!(alerts.outstanding.is_empty());
    let kinds: Vec<(u64, &str)> = alerts
        .tamper
        .iter()
        .map(|a| (a.device_seq, a.kind.as_str()))
        .collect();
    assert_eq!(kinds, vec![(2, "fork"), (6, "chain_break")]);
    // Each alert is also in the log: a `tamper_alert` event of the server chain naming the
    // refused event's hash and the kind, with the device's actor. A re-sent fork adds
    // neither an alert nor an event.
    let r = upload(&server, &device, &[&fork]).await;
    assert_eq!(r.forked, vec![2]);
    let logged = server.events_of("tamper_alert").await;
    let described: Vec<_> = logged
        .iter()
        .map(|e| {
            (
                e.resource_id.clone(),
                e.fields.clone(),
                e.recorded_by,
                e.outcome,
                e.actor_user_id,
                e.patient_id,
            )
        })
        .collect();
    let expected = |signed: &SignedAuditEvent, kind: &str| {
        (
            signed.event.hash().to_hex(),
            vec![kind.to_owned()],
            clinicdesk_protocol::audit::Recorder::Server,
            Outcome::Denied,
            uid,
            None,
        )
    };
    assert_eq!(
        described,
        vec![expected(&fork, "fork"), expected(&bad_link, "chain_break")]
    );
    let (_, body) = server
        .get("/v1/audit/alerts", admin.session_token.expose())
        .await;
    let alerts: AuditAlerts = serde_json::from_value(body).unwrap();
    assert_eq!(
        alerts
            .tamper
            .iter()
            .map(|a| a.logged_event_id)
            .collect::<Vec<_>>(),
        logged.iter().map(|e| Some(e.id)).collect::<Vec<_>>()
    );
    let before = leaves(&server, clinic).await;
    let r = upload(&server, &device, &[e(6)]).await;
    assert_eq!(r.highest_contiguous_seq, 6);
    let latest = r.checkpoint.clone();
    assert_eq!(latest.checkpoint.tree_size, before + 1);
    let (first_size, latest_size) = (
        first_checkpoint.checkpoint.tree_size,
        latest.checkpoint.tree_size,
    );

    // Proofs from the API verify against the signed checkpoints.
    let (status, body) = server
        .get(
            &format!(
                "/v1/audit/consistency?old_size={}&new_size={}",
                first_size, latest_size
            ),
            admin.session_token.expose(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let proof: ConsistencyEvidence = serde_json::from_value(body).unwrap();
    verify_consistency(
        first_size,
        &first_checkpoint.checkpoint.root_hash,
        latest_size,
        &latest.checkpoint.root_hash,
        &proof.hashes,
    )
    .unwrap();
    // A size no log can reach is a bad request, not a server error (found by schemathesis).
    let (status, body) = server
        .get(
            "/v1/audit/consistency?old_size=9223372036854775808&new_size=0",
            admin.session_token.expose(),
        )
        .await;
    assert_eq!((status, body["field"].as_str()), (400, Some("old_size")));
    // The workstation's events and the logged alerts alike.
    let proved = events
        .iter()
        .map(|s| &s.event)
        .chain(&logged)
        .map(|e| (e.id, e.hash()));
    for (id, hash) in proved {
        let (status, body) = server
            .get(
                &format!("/v1/audit/events/{id}/inclusion?tree_size={latest_size}"),
                admin.session_token.expose(),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let p: InclusionEvidence = serde_json::from_value(body).unwrap();
        verify_inclusion(
            &latest.checkpoint.root_hash,
            latest_size,
            p.leaf_index,
            &hash,
            &p.hashes,
        )
        .unwrap();
    }
    // A size nobody signed is refused; so is an unknown event.
    let (status, _) = server
        .get(
            &format!(
                "/v1/audit/events/{}/inclusion?tree_size={}",
                e(1).event.id,
                unsigned
            ),
            admin.session_token.expose(),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = server
        .get(
            &format!("/v1/audit/events/{}/inclusion?tree_size=6", Uuid::now_v7()),
            admin.session_token.expose(),
        )
        .await;
    assert_eq!(status, 404);
    let (status, body) = server
        .get("/v1/audit/checkpoint", admin.session_token.expose())
        .await;
    assert_eq!(status, 200);
    let on_demand: SignedCheckpoint = serde_json::from_value(body).unwrap();
    // Signed now, over the reads of the trail since the last upload too.
    assert_eq!(
        on_demand.checkpoint.tree_size,
        leaves(&server, clinic).await - 1
    );
    assert!(on_demand.checkpoint.tree_size > latest_size);

    // Search: newest first, by cursor, every event exactly once; clinicians may not search.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!(
            "/v1/audit/events?patient_id={}&limit=4",
            Uuid::from_u128(99)
        );
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, body) = server.get(&path, admin.session_token.expose()).await;
        assert_eq!(status, 200, "{body}");
        let page: AuditPage = serde_json::from_value(body).unwrap();
        seen.extend(page.events.iter().map(|r| r.event.device_seq));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, vec![6, 5, 4, 3, 2, 1]);
    let window = format!(
        "/v1/audit/events?from_ms={}&to_ms={}",
        e(2).event.occurred_at_ms,
        e(4).event.occurred_at_ms
    );
    let (_, body) = server.get(&window, admin.session_token.expose()).await;
    let page: AuditPage = serde_json::from_value(body).unwrap();
    assert_eq!(
        page.events
            .iter()
            .map(|r| r.event.device_seq)
            .collect::<Vec<_>>(),
        vec![3, 2]
    );
    let (status, _) = server
        .get("/v1/audit/events", login.session_token.expose())
        .await;
    assert_eq!(status, 403);
    let (status, body) = server
        .get(
            "/v1/audit/events?cursor=nonsense",
            admin.session_token.expose(),
        )
        .await;
    assert_eq!((status, body["field"].as_str()), (400, Some("cursor")));

    // Another clinic's admin sees none of it: only their workstation's enrollment and their
    // own sign-in's event (newest first), no proofs, a log of those two.
    let other = server.seed(0xB, "Clinic B").await;
    let other_device = TestDevice::enroll(&server, &other.enrollment_code).await;
    let other_admin = other_device
        .login(&server, "admin", password_of(&other, "admin"))
        .await;
    let (status, body) = server
        .get("/v1/audit/events", other_admin.session_token.expose())
        .await;
    assert_eq!(status, 200, "{body}");
    let page: AuditPage = serde_json::from_value(body).unwrap();
    let theirs: Vec<_> = page.events.iter().map(|r| &r.event).collect();
    assert_eq!(
        theirs
            .iter()
            .map(|e| (e.clinic_id, e.action))
            .collect::<Vec<_>>(),
        [
            (other_device.clinic_id, AuditAction::MfaEnrolled),
            (other_device.clinic_id, AuditAction::DeviceEnrolled),
        ]
    );
    let (status, _) = server
        .get(
            &format!("/v1/audit/events/{}/inclusion?tree_size=6", e(1).event.id),
            other_admin.session_token.expose(),
        )
        .await;
    assert_eq!(status, 404);
    let (_, body) = server
        .get("/v1/audit/checkpoint", other_admin.session_token.expose())
        .await;
    let theirs: SignedCheckpoint = serde_json::from_value(body).unwrap();
    // Their two events, and their two reads of the trail before this one.
    assert_eq!(theirs.checkpoint.tree_size, 4);
    let (_, body) = server
        .get("/v1/audit/alerts", other_admin.session_token.expose())
        .await;
    let alerts: AuditAlerts = serde_json::from_value(body).unwrap();
    assert!(alerts.tamper.is_empty() && alerts.outstanding.is_empty());

    // The whole store verifies, and reports the two alerts.
    let key = PublicKey::from_hex(&device.audit_public_key).unwrap();
    let report = crate::harness::verify_trail(&server.store, &key, &[latest])
        .await
        .unwrap();
    // Six of the workstation; of the server, the two enrollments, three second factors set
    // up at sign-in, the two tamper alerts, and each read of the trail above (both
    // clinics').
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(&server.owner_pool().await)
        .await
        .unwrap();
    let trail_reads: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE event_json LIKE '%\"resource_type\":\"AuditTrail\"%'",
    )
    .fetch_one(&server.owner_pool().await)
    .await
    .unwrap();
    assert!(trail_reads >= 20, "{trail_reads}");
    assert_eq!(stored, 13 + trail_reads);
    assert_eq!(
        (report.events, report.alerts),
        (u64::try_from(stored).unwrap(), 2)
    );
    assert!(report.gaps.is_empty());
}

#[tokio::test]
async fn a_full_batch_is_refused_whole_for_one_bad_signature_and_a_repeat_within_it_is_stored_once()
{
    let server = TestServer::start().await;
    let SignedIn { device, login, .. } = server.signed_in(CLINIC_A, "clinician").await;
    let events = chain(&device, login.user.user_id, 300);
    let stored = || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE device_id = $1")
            .bind(device.id.to_string())
            .fetch_one(&server.owner_pool().await)
            .await
            .unwrap();
        n
    };
    // Big enough to be checked on several threads: a forged event in the last part still
    // turns the whole batch away, and nothing of it is stored.
    let mut forged: Vec<&SignedAuditEvent> = events.iter().collect();
    let mut changed = events[290].clone();
    changed.event.fields.push("phone".into());
    forged[290] = &changed;
    let (status, body) = server
        .post(
            "/v1/audit/batches",
            None,
            json!({ "device_id": device.id, "events": forged }),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_signature"))
    );
    assert_eq!(stored().await, 0);

    // The same event twice in one batch (and a fork of another beside it): stored once,
    // the fork kept as an alert.
    let fork = sign(
        &device,
        event(&device, login.user.user_id, 2, events[0].event.hash()),
    );
    let r = upload(
        &server,
        &device,
        &[&events[0], &events[1], &events[1], &fork],
    )
    .await;
    assert_eq!(r.highest_contiguous_seq, 2);
    assert_eq!(r.forked, vec![2]);
    assert_eq!(stored().await, 2);
    // The rest, in one batch through the threaded check.
    let rest: Vec<&SignedAuditEvent> = events[2..].iter().collect();
    let r = upload(&server, &device, &rest).await;
    assert_eq!(r.highest_contiguous_seq, 300);
    assert_eq!(stored().await, 300);
}

#[tokio::test]
async fn an_event_of_another_device_or_an_unknown_device_or_an_empty_batch_is_refused() {
    let server = TestServer::start().await;
    let SignedIn { device, login, .. } = server.signed_in(CLINIC_A, "clinician").await;
    let uid = login.user.user_id;
    let other = TestDevice {
        key: ed25519_dalek::SigningKey::from_bytes(&crate::harness::rand32()),
        recovery: ed25519_dalek::SigningKey::from_bytes(&crate::harness::rand32()),
        secret: crate::harness::rand32(),
        id: Uuid::now_v7(),
        clinic_id: device.clinic_id,
        audit_public_key: device.audit_public_key.clone(),
    };
    let foreign = sign(&other, event(&other, uid, 1, Hash32::GENESIS));
    let (status, _) = server
        .post(
            "/v1/audit/batches",
            None,
            json!({ "device_id": device.id, "events": [foreign] }),
        )
        .await;
    assert_eq!(status, 403);
    let (status, body) = server
        .post(
            "/v1/audit/batches",
            None,
            json!({ "device_id": other.id, "events": [foreign] }),
        )
        .await;
    assert_eq!(body["code"], "device_unknown", "{status}");
    let (status, body) = server
        .post(
            "/v1/audit/batches",
            None,
            json!({ "device_id": device.id, "events": [] }),
        )
        .await;
    assert_eq!((status, body["field"].as_str()), (400, Some("events")));
}

/// When the user's live session was last seen.
async fn session_last_seen(server: &TestServer, user: Uuid) -> i64 {
    sqlx::query_scalar(
        "SELECT last_seen_at_ms FROM sessions WHERE user_id = $1 AND revoked_at_ms IS NULL",
    )
    .bind(user.to_string())
    .fetch_one(&server.owner_pool().await)
    .await
    .unwrap()
}

/// The events of PHI reads stay one gapless server chain and one log while uploads and a
/// second instance on the same database move both on between them: each instance writes
/// from the tip it last committed, and a stale tip is read again, never forked. The
/// session's last-seen time rides in the read's own transaction, and never moves back.
#[tokio::test]
async fn server_events_stay_one_chain_when_uploads_and_another_instance_write_between() {
    let a = TestServer::start().await;
    let b = a.another_instance().await;
    let SignedIn { device, login, .. } = a.signed_in(0x71B5, "clinician").await;
    let clinic = device.clinic_id;
    let token = login.session_token.expose();
    let (status, body) = a.get("/v1/appointments", token).await;
    assert_eq!(status, 200, "{body}");
    let patient = body["appointments"][0]["patient_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/patients/{patient}");
    let uploads = chain(&device, login.user.user_id, 8);
    for round in uploads.chunks(2) {
        assert_eq!(a.get(&path, token).await.0, 200);
        upload(&a, &device, &round.iter().collect::<Vec<_>>()).await;
        assert_eq!(a.get(&path, token).await.0, 200);
        a.clock.advance_ms(1_000);
        assert_eq!(b.get(&path, token).await.0, 200);
    }

    let db = a.owner_pool().await;
    let chain_id: String =
        sqlx::query_scalar("SELECT id FROM devices WHERE clinic_id = $1 AND kind = 'server'")
            .bind(clinic.to_string())
            .fetch_one(&db)
            .await
            .unwrap();
    let seqs: Vec<i64> = sqlx::query_scalar(
        "SELECT device_seq FROM audit_events WHERE device_id = $1 ORDER BY device_seq",
    )
    .bind(&chain_id)
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(
        seqs,
        (1..=i64::try_from(seqs.len()).unwrap()).collect::<Vec<_>>()
    );
    let reads: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE device_id = $1 AND patient_id = $2",
    )
    .bind(&chain_id)
    .bind(&patient)
    .fetch_one(&db)
    .await
    .unwrap();
    // The schedule's line about the patient, then every read exactly once.
    assert_eq!(reads, 1 + 12);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE clinic_id = $1")
        .bind(clinic.to_string())
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(leaves(&a, clinic).await, u64::try_from(stored).unwrap());
    let key = PublicKey::from_hex(&device.audit_public_key).unwrap();
    let report = crate::harness::verify_trail(&a.store, &key, &[])
        .await
        .unwrap();
    assert_eq!(report.events, u64::try_from(stored).unwrap());

    let last_seen = session_last_seen(&a, login.user.user_id).await;
    let now = clinicdesk_server::time::Clock::now_ms(&a.clock);
    assert_eq!(last_seen, now, "the last read touched the session");

    // A request that began before the stored time (a slower one that finished later) does
    // not move it back.
    sqlx::query("UPDATE sessions SET last_seen_at_ms = $1 WHERE user_id = $2")
        .bind(now + 5_000)
        .bind(login.user.user_id.to_string())
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(a.get(&path, token).await.0, 200);
    let last_seen = session_last_seen(&a, login.user.user_id).await;
    assert_eq!(last_seen, now + 5_000, "never moved back");
}

/// A workstation's offline reads exist only in its outbox until it uploads them. Revoked
/// meanwhile, it may still hand in what its key signed before the revocation (nothing
/// signed after, and nothing else: no session): those events are stored, each flagged in
/// the log by a `received_after_revocation` server event, and listed for the clinic's
/// admins; the receipt tells the workstation that it is revoked.
#[tokio::test]
async fn a_revoked_device_hands_in_what_it_signed_before_its_revocation_and_nothing_after() {
    let server = TestServer::start().await;
    let report = server.seed(0xA, "Clinic A").await;
    let device = TestDevice::enroll(&server, &report.enrollment_code).await;
    let login = device
        .login(&server, "clinician", password_of(&report, "clinician"))
        .await;
    let user = login.user.user_id;
    // Five chained views a second apart; the first two reach the server before the revocation.
    let views = chain(&device, user, 5);
    assert!(
        !upload(&server, &device, &[&views[0], &views[1]])
            .await
            .device_revoked
    );
    server.clock.advance_ms(60_000);
    let admin_device = server.enroll_another(Uuid::from_u128(0xA)).await;
    let admin = admin_device
        .login(&server, "admin", password_of(&report, "admin"))
        .await;
    let admin_token = admin.session_token.expose();
    let revoked_at = clinicdesk_server::time::Clock::now_ms(&server.clock);
    let (status, _) = server
        .post(
            &format!("/v1/devices/{}/revoke", device.id),
            Some(admin_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 204);

    // The other three, with one signed after the revocation in the same batch: the three
    // are stored, that one is not.
    let mut late = event(&device, user, 6, views[4].event.hash());
    late.occurred_at_ms = revoked_at + 1;
    let late = sign(&device, late);
    let receipt = upload(&server, &device, &[&views[2], &views[3], &views[4], &late]).await;
    assert!(receipt.device_revoked);
    assert_eq!(receipt.highest_contiguous_seq, 5);
    let (status, body) = server
        .post(
            "/v1/audit/batches",
            None,
            json!({ "device_id": device.id, "events": [late] }),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("device_revoked"))
    );
    let stored: Vec<Uuid> = server
        .events_of("view")
        .await
        .into_iter()
        .filter(|e| e.device_id == device.id)
        .map(|e| e.id)
        .collect();
    let signed: Vec<Uuid> = views.iter().map(|v| v.event.id).collect();
    assert_eq!(
        stored, signed,
        "every view signed before the revocation, and no other"
    );

    // Each of the three is flagged in the log, and the admins' alerts list them.
    let mut flagged: Vec<String> = server
        .events_of(AuditAction::ReceivedAfterRevocation.as_str())
        .await
        .into_iter()
        .map(|e| {
            assert_eq!(
                e.patient_id, None,
                "a flag is not another access to the record"
            );
            e.resource_id
        })
        .collect();
    flagged.sort();
    let mut late_ids: Vec<String> = signed[2..].iter().map(Uuid::to_string).collect();
    late_ids.sort();
    assert_eq!(flagged, late_ids);
    let (status, body) = server.get("/v1/audit/alerts", admin_token).await;
    assert_eq!(status, 200, "{body}");
    let alerts: AuditAlerts = serde_json::from_value(body).unwrap();
    assert_eq!(
        alerts.received_after_revocation,
        [ReceivedAfterRevocation {
            device_id: device.id,
            revoked_at_ms: revoked_at,
            events: 3,
            from_seq: 3,
            to_seq: 5,
        }]
    );

    // Still no session for it, and the whole trail verifies.
    let (_, body) = server
        .post(
            "/v1/auth/challenge",
            None,
            json!({ "device_id": device.id }),
        )
        .await;
    assert_eq!(body["code"], "device_revoked");
    let key = PublicKey::from_hex(&device.audit_public_key).unwrap();
    crate::harness::verify_trail(&server.store, &key, &[])
        .await
        .unwrap();
}

/// What a workstation signs reaches the operator's terminal (`audit report`) and the admins'
/// screens: a control character in any of its strings (an escape sequence that clears the
/// screen, retitles the window or hides a line) refuses the batch, naming the field, and
/// nothing of it is stored. (The table escapes what an older trail may hold: a unit test of
/// `print_report`.)
#[tokio::test]
async fn a_workstation_cannot_store_control_characters_in_the_trail() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login,
    } = server.signed_in(CLINIC_A, "clinician").await;
    let clinic = report.clinic_id;
    let base = leaves(&server, clinic).await;
    type Spoil = fn(&mut AuditEvent);
    let cases: [(&str, Spoil); 5] = [
        ("resource_type", |e| {
            e.resource_type = "Patient\u{1b}[2J".into()
        }),
        ("resource_id", |e| e.resource_id = "p\u{7}".into()),
        ("fields", |e| e.fields = vec!["name\r".into()]),
        ("route", |e| e.route = "patient\n".into()),
        ("break_glass", |e| {
            e.break_glass = Some(clinicdesk_protocol::audit::BreakGlass {
                reason_code: "emergency".into(),
                reason_text: "covering\u{1b}]0;owned\u{7}".into(),
            })
        }),
    ];
    for (field, spoil) in cases {
        let mut e = event(&device, login.user.user_id, 1, Hash32::GENESIS);
        spoil(&mut e);
        let signed = sign(&device, e);
        let (status, body) = server
            .post(
                "/v1/audit/batches",
                None,
                json!({ "device_id": device.id, "events": [signed] }),
            )
            .await;
        assert_eq!(
            (status, body["code"].as_str(), body["field"].as_str()),
            (400, Some("bad_request"), Some(field)),
            "{body}"
        );
    }
    assert_eq!(leaves(&server, clinic).await, base, "nothing was stored");
    // The same event without them is stored.
    let clean = sign(
        &device,
        event(&device, login.user.user_id, 1, Hash32::GENESIS),
    );
    assert_eq!(
        upload(&server, &device, &[&clean])
            .await
            .highest_contiguous_seq,
        1
    );
}

/// An upload sends back the last receipt its device held (rollback detection, checked end
/// to end against a restored server in the cross-crate `rollback` test). A held receipt
/// the store still agrees with raises nothing; one the server did not sign (here, one
/// claiming the device's chain reached further, signed by the device's own key) proves
/// nothing: no alert, and the chain is not taken on from it, so a workstation cannot paper
/// over events it never sent.
#[tokio::test]
async fn a_held_receipt_is_judged_only_when_the_server_signed_it() {
    let server = TestServer::start().await;
    let SignedIn { device, login, .. } = server.signed_in(CLINIC_A, "clinician").await;
    let uid = login.user.user_id;
    let events = chain(&device, uid, 6);
    let e = |seq: usize| &events[seq - 1];
    let upload_holding = |events: Vec<&SignedAuditEvent>, held: &AuditReceipt| {
        let body = json!({ "device_id": device.id, "events": events, "held_receipt": held.held() });
        async {
            let (status, body) = server.post("/v1/audit/batches", None, body).await;
            assert_eq!(status, 200, "{body}");
            serde_json::from_value::<AuditReceipt>(body).unwrap()
        }
    };
    let alerts = || async {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM audit_alerts WHERE kind = 'rollback'")
                .fetch_one(&server.owner_pool().await)
                .await
                .unwrap();
        n
    };

    let first = upload(&server, &device, &[e(1), e(2)]).await;
    let second = upload_holding(vec![e(3), e(4)], &first).await;
    assert_eq!(second.highest_contiguous_seq, 4);
    assert_eq!(
        alerts().await,
        0,
        "a receipt the store agrees with raises nothing"
    );

    // A receipt "for" events 1..=5, signed by the device, not the server.
    let mut forged = second.held();
    forged.highest_contiguous_seq = 5;
    forged.contiguous_hash = e(5).event.hash();
    forged.signature = to_hex(&device.key.sign(&forged.canonical_bytes()).to_bytes());
    let answer = upload_holding(vec![e(6)], &forged).await;
    assert_eq!(
        answer.highest_contiguous_seq, 4,
        "the chain is not taken on past event 5, which the server never had"
    );
    assert_eq!(alerts().await, 0);

    // Event 5 arrives: the chain is whole.
    let answer = upload_holding(vec![e(5)], &second).await;
    assert_eq!(answer.highest_contiguous_seq, 6);
    assert_eq!(alerts().await, 0);
}
