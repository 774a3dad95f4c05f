//! Care teams and break-glass through the real server: a clinician reads clinical content
//! only for their care team; breaking the glass opens one chart for 60 minutes with every
//! read flagged; admins acknowledge each grant once, and that is audited too.

use clinicdesk_protocol::audit::{AuditAction, AuditEvent, Outcome, Recorder};
use clinicdesk_protocol::wire::{
    AppointmentList, BreakGlassGrant, BreakGlassQueue, BreakGlassReason, ClinicalAccess, Patient,
};
use clinicdesk_server::audit::key::PublicKey;
use clinicdesk_server::scope::{ClinicScope, Console};
use clinicdesk_server::store::Backend;
use clinicdesk_server::time::Clock;
use serde_json::json;
use uuid::Uuid;

use crate::harness::{SignedIn, TestServer, password_of};

const MINUTE: i64 = 60_000;

pub(crate) async fn patient(server: &TestServer, token: &str, id: Uuid) -> Patient {
    let (status, body) = server.get(&format!("/v1/patients/{id}"), token).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).unwrap()
}

/// The server's latest event about `patient` of `action`.
async fn last_event(server: &TestServer, action: &str, patient: Uuid) -> AuditEvent {
    server
        .events_of(action)
        .await
        .into_iter()
        .rev()
        .find(|e| e.patient_id == Some(patient))
        .unwrap_or_else(|| panic!("no {action} event about the patient"))
}

/// The seeded clinic's one patient outside the clinician's care team; the others are on it.
pub(crate) async fn outside_patient(server: &TestServer, token: &str) -> Uuid {
    let (_, body) = server.get("/v1/appointments", token).await;
    let list: AppointmentList = serde_json::from_value(body).unwrap();
    let mut outside = Vec::new();
    for a in &list.appointments {
        let p = patient(server, token, a.patient_id).await;
        match p.clinical_access {
            ClinicalAccess::CareTeam => assert!(p.clinical.is_some()),
            ClinicalAccess::OutsideCareTeam => {
                assert!(p.clinical.is_none() && p.break_glass.is_none());
                outside.push(p.id);
            }
            other => panic!("a clinician got {other:?}"),
        }
    }
    assert_eq!(
        outside.len(),
        1,
        "the seed keeps one patient off the care team"
    );
    outside[0]
}

async fn break_glass(server: &TestServer, token: &str, patient: Uuid) -> BreakGlassGrant {
    let (status, body) = server
        .post(
            &format!("/v1/patients/{patient}/break-glass"),
            Some(token),
            json!({ "reason_code": "emergency", "reason_text": "Patient collapsed in the waiting room" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    serde_json::from_value(body).unwrap()
}

#[tokio::test]
async fn break_glass_opens_one_chart_for_an_hour_and_flags_every_read() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login,
    } = server.signed_in(0xB6, "clinician").await;
    let token = login.session_token.expose();
    let target = outside_patient(&server, token).await;
    let withheld = last_event(&server, "view", target).await;
    assert!(!withheld.fields.contains(&"allergies".to_owned()));
    assert_eq!(withheld.break_glass, None);

    // Bad requests are refused by field, and nothing is granted.
    for (body, field) in [
        (
            json!({ "reason_code": "emergency", "reason_text": "   " }),
            "reason_text",
        ),
        (
            json!({ "reason_code": "emergency", "reason_text": "x".repeat(501) }),
            "reason_text",
        ),
        (
            json!({ "reason_code": "emergency", "reason_text": "bell\u{7}" }),
            "reason_text",
        ),
        (
            json!({ "reason_code": "curiosity", "reason_text": "why not" }),
            "body",
        ),
    ] {
        let (status, err) = server
            .post(
                &format!("/v1/patients/{target}/break-glass"),
                Some(token),
                body,
            )
            .await;
        assert_eq!((status, err["field"].as_str()), (400, Some(field)), "{err}");
    }
    // Another clinic's patient is not found, exactly like one that does not exist.
    let other = server.seed(0xB7, "Clinic B7").await;
    let theirs: String = sqlx::query_scalar("SELECT min(id) FROM patients WHERE clinic_id = $1")
        .bind(other.clinic_id.to_string())
        .fetch_one(&server.owner_pool().await)
        .await
        .unwrap();
    let probes = [theirs, Uuid::now_v7().to_string()];
    for id in &probes {
        let (status, _) = server
            .post(
                &format!("/v1/patients/{id}/break-glass"),
                Some(token),
                json!({ "reason_code": "emergency", "reason_text": "probe" }),
            )
            .await;
        assert_eq!(status, 404);
    }
    // The bad requests leave no event; each probe is recorded as a denied break-glass
    // naming the path asked for (no patient: none was found in this clinic).
    let refused: Vec<_> = server
        .events_of("break_glass")
        .await
        .into_iter()
        .map(|e| {
            (
                e.outcome,
                e.resource_id,
                e.patient_id,
                e.actor_user_id,
                e.route,
            )
        })
        .collect();
    let expected: Vec<_> = probes
        .iter()
        .map(|id| {
            (
                Outcome::Denied,
                format!("/v1/patients/{id}/break-glass"),
                None,
                login.user.user_id,
                "/v1/patients/{patient_id}/break-glass".to_owned(),
            )
        })
        .collect();
    assert_eq!(refused, expected);

    let granted_at = server.clock.now_ms();
    let grant = break_glass(&server, token, target).await;
    assert_eq!(grant.patient_id, target);
    assert_eq!(grant.reason_code, BreakGlassReason::Emergency);
    assert_eq!(grant.granted_at_ms, granted_at);
    assert_eq!(grant.expires_at_ms, granted_at + 60 * MINUTE);
    let opened = last_event(&server, "break_glass", target).await;
    assert_eq!(opened.recorded_by, Recorder::Server);
    assert_eq!(opened.actor_user_id, login.user.user_id);
    let flag = opened
        .break_glass
        .clone()
        .expect("the grant's event says why");
    assert_eq!(flag.reason_code, "emergency");
    assert_eq!(flag.reason_text, "Patient collapsed in the waiting room");
    assert_eq!(
        opened.request.as_ref().unwrap().session_device_id,
        Some(device.id)
    );

    // Every read within the hour (the session kept alive every 14 minutes) is clinical and
    // flagged with the grant's reason.
    for step in 0..5 {
        if step > 0 {
            server.clock.advance_ms(14 * MINUTE);
        }
        let p = patient(&server, token, target).await;
        assert_eq!(p.clinical_access, ClinicalAccess::BreakGlass, "step {step}");
        assert!(p.clinical.is_some());
        assert_eq!(
            p.break_glass.as_ref().map(|g| g.grant_id),
            Some(grant.grant_id)
        );
        let read = last_event(&server, "view", target).await;
        assert!(read.fields.contains(&"allergies".to_owned()));
        assert_eq!(read.break_glass.as_ref(), Some(&flag), "step {step}");
    }
    // 56 minutes in; at 61 the grant is over: demographics only, unflagged.
    server.clock.advance_ms(5 * MINUTE);
    let after = patient(&server, token, target).await;
    assert_eq!(after.clinical_access, ClinicalAccess::OutsideCareTeam);
    assert!(after.clinical.is_none() && after.break_glass.is_none());
    let read = last_event(&server, "view", target).await;
    assert_eq!(read.break_glass, None);
    assert!(!read.fields.contains(&"allergies".to_owned()));

    // The grant was the clinician's alone: the front desk still reads no clinical content
    // of this patient.
    let desk = device
        .login(&server, "frontdesk", password_of(&report, "frontdesk"))
        .await;
    let seen = patient(&server, desk.session_token.expose(), target).await;
    assert_eq!(seen.clinical_access, ClinicalAccess::NotPermitted);
    assert!(seen.clinical.is_none());
    // Nor may the front desk break the glass; trying is recorded.
    let (status, _) = server
        .post(
            &format!("/v1/patients/{target}/break-glass"),
            Some(desk.session_token.expose()),
            json!({ "reason_code": "emergency", "reason_text": "Patient collapsed" }),
        )
        .await;
    assert_eq!(status, 403);
    let tried = server.events_of("break_glass").await;
    let tried = tried.last().unwrap();
    assert_eq!(
        (
            tried.outcome,
            tried.actor_user_id,
            tried.resource_id.clone()
        ),
        (
            Outcome::Denied,
            desk.user.user_id,
            format!("/v1/patients/{target}/break-glass")
        )
    );

    let key = PublicKey::from_hex(&device.audit_public_key).unwrap();
    crate::harness::verify_trail(&server.store, &key, &[])
        .await
        .unwrap();
}

#[tokio::test]
async fn admins_acknowledge_each_grant_once_and_the_review_is_audited() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login,
    } = server.signed_in(0xB8, "clinician").await;
    let clinician = login.session_token.expose();
    let admin = device
        .login(&server, "admin", password_of(&report, "admin"))
        .await;
    let admin_token = admin.session_token.expose();
    // A clinic with one admin asks for one review per grant (the default is two).
    let (status, body) = server
        .post(
            "/v1/clinic/break-glass-reviewers",
            Some(admin_token),
            json!({ "reviewers": 1 }),
        )
        .await;
    assert_eq!(
        (status, body["break_glass_reviewers"].as_u64()),
        (200, Some(1))
    );
    let target = outside_patient(&server, clinician).await;
    let grant = break_glass(&server, clinician, target).await;
    patient(&server, clinician, target).await;
    let queue = |pending: bool, token: String| {
        let server = &server;
        async move {
            let (status, body) = server
                .get(&format!("/v1/break-glass?pending={pending}"), &token)
                .await;
            assert_eq!(status, 200, "{body}");
            serde_json::from_value::<BreakGlassQueue>(body).unwrap()
        }
    };
    let waiting = queue(true, admin_token.to_owned()).await;
    assert_eq!(waiting.grants.len(), 1);
    let item = &waiting.grants[0];
    assert_eq!(item.grant, grant);
    assert_eq!(item.user_id, login.user.user_id);
    assert_eq!(item.username, "clinician");
    assert!(item.reviewed.is_none());
    assert_eq!(
        (
            item.reviews_required,
            item.reviews.len(),
            item.short_of_reviewers
        ),
        (1, 0, false)
    );
    // The grant's own event and the chart read under it (and the outside-care-team read
    // just before it, in the same millisecond, as the window starts at the grant).
    assert!(item.events_during >= 2, "{}", item.events_during);

    // Clinicians do not see the queue; another clinic's admin cannot find the grant.
    let (status, _) = server.get("/v1/break-glass", clinician).await;
    assert_eq!(status, 403);
    let elsewhere = server.signed_in(0xB9, "admin").await;
    let review_path = format!("/v1/break-glass/{}/review", grant.grant_id);
    let (status, _) = server
        .post(
            &review_path,
            Some(elsewhere.login.session_token.expose()),
            json!({ "note": "not mine" }),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = server
        .get("/v1/break-glass", elsewhere.login.session_token.expose())
        .await;
    assert_eq!(status, 200);
    assert!(
        queue(false, elsewhere.login.session_token.expose().to_owned())
            .await
            .grants
            .is_empty()
    );

    let (status, err) = server
        .post(&review_path, Some(admin_token), json!({ "note": "" }))
        .await;
    assert_eq!((status, err["field"].as_str()), (400, Some("note")));
    let reviewed_at = server.clock.now_ms();
    let (status, body) = server
        .post(
            &review_path,
            Some(admin_token),
            json!({ "note": "Confirmed with the ED log: emergency visit" }),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, err) = server
        .post(&review_path, Some(admin_token), json!({ "note": "again" }))
        .await;
    assert_eq!((status, err["code"].as_str()), (409, Some("conflict")));

    assert!(queue(true, admin_token.to_owned()).await.grants.is_empty());
    let all = queue(false, admin_token.to_owned()).await;
    let note = all.grants[0].reviewed.as_ref().expect("reviewed");
    assert_eq!(note.reviewed_by, admin.user.user_id);
    assert_eq!(note.reviewed_at_ms, reviewed_at);
    assert_eq!(
        note.note.expose(),
        "Confirmed with the ED log: emergency visit"
    );

    assert_eq!(all.grants[0].reviews, vec![note.clone()]);
    let reviewed = server.events_of("break_glass_reviewed").await;
    assert_eq!(reviewed.len(), 1);
    let e = &reviewed[0];
    assert_eq!(e.action, AuditAction::BreakGlassReviewed);
    assert_eq!(e.actor_user_id, admin.user.user_id);
    assert_eq!(e.resource_type, "BreakGlassGrant");
    assert_eq!(e.resource_id, grant.grant_id.to_string());
    assert_eq!(e.patient_id, Some(target));

    // The application's own connection (inside the clinic's scope, on PostgreSQL) can
    // neither remove a grant nor rewrite a review.
    // Each refusal is the guard's own: SQLite's triggers, PostgreSQL's grants and trigger.
    let postgres = server.store.backend() == Backend::Postgres;
    let scope = ClinicScope::of_console(&Console::operator(), report.clinic_id);
    for (statement, refusal) in [
        (
            "DELETE FROM break_glass_grants WHERE id = $1",
            if postgres {
                "permission denied for table break_glass_grants"
            } else {
                "break_glass_grants is append-only"
            },
        ),
        (
            "UPDATE break_glass_grants SET review_note = 'rewritten' WHERE id = $1",
            if postgres {
                "a break-glass grant is reviewed once"
            } else {
                "a break-glass grant is reviewed once and otherwise unchanged"
            },
        ),
    ] {
        let mut tx = server.store.clinic_tx(&scope).await.unwrap();
        let done = sqlx::query(statement)
            .bind(grant.grant_id.to_string())
            .execute(&mut *tx)
            .await;
        match done {
            Err(sqlx::Error::Database(e)) => assert!(
                e.message().contains(refusal),
                "{statement} was refused, but not by its guard: {}",
                e.message()
            ),
            other => panic!("{statement} was not refused by the database: {other:?}"),
        }
    }
    let key = PublicKey::from_hex(&device.audit_public_key).unwrap();
    crate::harness::verify_trail(&server.store, &key, &[])
        .await
        .unwrap();
}

/// A new admin's account, created by `by` (an admin's token), signed in on `device` with a
/// password of their own.
async fn new_admin(
    server: &TestServer,
    device: &crate::harness::TestDevice,
    by: &str,
    username: &str,
) -> clinicdesk_protocol::wire::LoginResponse {
    let (status, body) = server
        .post(
            "/v1/users",
            Some(by),
            json!({
                "username": username,
                "display_name": "Second Admin (synthetic)",
                "role": "admin",
                "password": "Lantern-Quillfeather-Orbit-4821",
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    device
        .first_login(
            server,
            username,
            "Lantern-Quillfeather-Orbit-4821",
            "Harbor-Mosaic-Tundra-Velvet-77",
        )
        .await
}

/// The review of a grant by two different admins (issue 22, "Review and the second wall").
/// Before, one admin could create a clinician's account (or change it), break the glass as
/// that clinician and acknowledge the grant alone: one review closed every grant.
#[tokio::test]
async fn a_grant_needs_two_admins_and_neither_may_have_changed_the_grantees_account() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login: first,
    } = server.signed_in(0xBA, "admin").await;
    let first_token = first.session_token.expose();
    let (_, settings) = server.get("/v1/clinic", first_token).await;
    assert_eq!(settings["break_glass_reviewers"].as_u64(), Some(2));
    let clinician_id: String =
        sqlx::query_scalar("SELECT id FROM users WHERE clinic_id = $1 AND username = 'clinician'")
            .bind(report.clinic_id.to_string())
            .fetch_one(&server.owner_pool().await)
            .await
            .unwrap();
    // The first admin changes the clinician's account (and changes it back).
    for role in ["billing", "clinician"] {
        let (status, body) = server
            .post(
                &format!("/v1/users/{clinician_id}/role"),
                Some(first_token),
                json!({ "role": role }),
            )
            .await;
        assert_eq!(status, 204, "{body}");
    }
    let second = new_admin(&server, &device, first_token, "second.admin").await;
    let second_token = second.session_token.expose();
    let clinician = device
        .login(&server, "clinician", password_of(&report, "clinician"))
        .await;
    let clinician_token = clinician.session_token.expose();
    let target = outside_patient(&server, clinician_token).await;
    let grant = break_glass(&server, clinician_token, target).await;
    let review_path = format!("/v1/break-glass/{}/review", grant.grant_id);
    let review = |token: String, note: &'static str| {
        let server = &server;
        let path = review_path.clone();
        async move {
            server
                .post(&path, Some(&token), json!({ "note": note }))
                .await
        }
    };
    let pending = |token: String| {
        let server = &server;
        async move {
            let (status, body) = server.get("/v1/break-glass?pending=true", &token).await;
            assert_eq!(status, 200, "{body}");
            serde_json::from_value::<BreakGlassQueue>(body)
                .unwrap()
                .grants
        }
    };

    // Two reviews needed; the first admin is barred, so only one admin may review: flagged.
    let waiting = pending(first_token.to_owned()).await;
    assert_eq!(waiting.len(), 1);
    assert_eq!(
        (waiting[0].reviews_required, waiting[0].short_of_reviewers),
        (2, true)
    );
    let (status, body) = review(first_token.to_owned(), "Checked the ED log").await;
    assert_eq!(
        (status, body["code"].as_str(), body["field"].as_str()),
        (403, Some("forbidden"), Some("account_changed")),
        "{body}"
    );

    // The second admin reviews: one of two, still pending and still short.
    let (status, body) = review(second_token.to_owned(), "Confirmed with the ED log").await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = review(second_token.to_owned(), "Again").await;
    assert_eq!(
        (status, body["field"].as_str()),
        (409, Some("reviewer")),
        "{body}"
    );
    let waiting = pending(second_token.to_owned()).await;
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].reviews.len(), 1);
    assert_eq!(waiting[0].reviews[0].reviewed_by, second.user.user_id);
    assert!(waiting[0].reviewed.is_none() && waiting[0].short_of_reviewers);

    // A third admin, who never touched the clinician's account, completes it.
    let third = new_admin(&server, &device, second_token, "third.admin").await;
    let third_token = third.session_token.expose();
    assert!(!pending(third_token.to_owned()).await[0].short_of_reviewers);
    let (status, body) = review(third_token.to_owned(), "Agreed: emergency").await;
    assert_eq!(status, 204, "{body}");
    assert!(pending(third_token.to_owned()).await.is_empty());
    let (_, body) = server.get("/v1/break-glass", third_token).await;
    let done = &serde_json::from_value::<BreakGlassQueue>(body)
        .unwrap()
        .grants[0];
    assert_eq!(
        done.reviewed.as_ref().map(|r| r.reviewed_by),
        Some(third.user.user_id)
    );
    let reviewers: Vec<Uuid> = done.reviews.iter().map(|r| r.reviewed_by).collect();
    assert_eq!(reviewers, vec![second.user.user_id, third.user.user_id]);
    let (status, body) = review(first_token.to_owned(), "Late").await;
    assert_eq!((status, body["field"].as_str()), (409, Some("grant_id")));

    // Each review is its own event in the trail; the reviews cannot be rewritten.
    let events = server.events_of("break_glass_reviewed").await;
    let actors: Vec<Uuid> = events.iter().map(|e| e.actor_user_id).collect();
    assert_eq!(actors, vec![second.user.user_id, third.user.user_id]);
    let postgres = server.store.backend() == Backend::Postgres;
    let scope = ClinicScope::of_console(&Console::operator(), report.clinic_id);
    let mut tx = server.store.clinic_tx(&scope).await.unwrap();
    let rewritten = sqlx::query("UPDATE break_glass_reviews SET note = 'rewritten'")
        .execute(&mut *tx)
        .await;
    let refusal = if postgres {
        "permission denied for table break_glass_reviews"
    } else {
        "break_glass_reviews is append-only"
    };
    match rewritten {
        Err(sqlx::Error::Database(e)) => assert!(e.message().contains(refusal), "{}", e.message()),
        other => panic!("a review was rewritten: {other:?}"),
    }
}
