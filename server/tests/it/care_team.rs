//! Care teams through the real server: the front desk puts a clinician on a patient's team
//! and takes them off, and the clinician's reads of that chart follow at once; each change
//! is a server event about the patient, recorded once; clinicians cannot change teams
//! (not even to add themselves); only an active clinician of the clinic can be added.

use clinicdesk_protocol::audit::{AuditEvent, Outcome};
use clinicdesk_protocol::wire::{CareTeam, ClinicalAccess, StaffMember};
use serde_json::json;
use uuid::Uuid;

use crate::break_glass::{outside_patient, patient};
use crate::harness::{SignedIn, TestServer, password_of};

/// The server's events about the patient's care team.
async fn team_events(server: &TestServer, action: &str, patient: Uuid) -> Vec<AuditEvent> {
    server
        .events_of(action)
        .await
        .into_iter()
        .filter(|e| e.resource_type == "CareTeam" && e.patient_id == Some(patient))
        .collect()
}

async fn team(server: &TestServer, token: &str, patient: Uuid) -> CareTeam {
    let (status, body) = server
        .get(&format!("/v1/patients/{patient}/care-team"), token)
        .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).unwrap()
}

/// The latest denied care-team change of `action`: who tried, and the path they asked for.
async fn refused_change(server: &TestServer, action: &str) -> (Uuid, String) {
    let denied: Vec<AuditEvent> = server
        .events_of(action)
        .await
        .into_iter()
        .filter(|e| e.resource_type == "CareTeam" && e.outcome == Outcome::Denied)
        .collect();
    let last = denied.last().expect("a denied change is recorded");
    assert_eq!(last.patient_id, None);
    (last.actor_user_id, last.resource_id.clone())
}

/// Adding `someone` is refused as a bad `clinician_id` (`why` names the case).
async fn refused_addition(
    server: &TestServer,
    token: &str,
    add_path: &str,
    someone: &str,
    why: &str,
) {
    let (status, body) = server
        .post(add_path, Some(token), json!({ "clinician_id": someone }))
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("clinician_id")),
        "{why}"
    );
}

#[tokio::test]
async fn the_front_desk_manages_care_teams_and_a_clinicians_access_follows() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login: clinician,
    } = server.signed_in(0xA, "clinician").await;
    let front = device
        .login(&server, "frontdesk", password_of(&report, "frontdesk"))
        .await;
    let (front, clinician) = (&front, &clinician);
    let outside = outside_patient(&server, clinician.session_token.expose()).await;
    let add_path = format!("/v1/patients/{outside}/care-team");
    let me = StaffMember {
        user_id: clinician.user.user_id,
        display_name: clinician.user.display_name.clone(),
    };

    // The clinician may neither see nor change the team, not even to add themselves.
    let (status, _) = server
        .get(&add_path, clinician.session_token.expose())
        .await;
    assert_eq!(status, 403);
    let (status, _) = server
        .post(
            &add_path,
            Some(clinician.session_token.expose()),
            json!({ "clinician_id": me.user_id }),
        )
        .await;
    assert_eq!(status, 403);
    // The refused change is recorded, as a refused read is (the path, not the patient).
    assert_eq!(
        refused_change(&server, "create").await,
        (clinician.user.user_id, add_path.clone())
    );

    // The front desk sees who could be added, and adds the clinician (twice: once counts).
    let before = team(&server, front.session_token.expose(), outside).await;
    assert!(before.members.is_empty());
    assert!(before.others.contains(&me), "{before:?}");
    for _ in 0..2 {
        let (status, body) = server
            .post(
                &add_path,
                Some(front.session_token.expose()),
                json!({ "clinician_id": me.user_id }),
            )
            .await;
        assert_eq!(status, 204, "{body}");
    }
    let after = team(&server, front.session_token.expose(), outside).await;
    assert_eq!(after.members, vec![me.clone()]);
    assert!(!after.others.contains(&me));
    let chart = patient(&server, clinician.session_token.expose(), outside).await;
    assert_eq!(chart.clinical_access, ClinicalAccess::CareTeam);
    assert!(chart.clinical.is_some() && chart.break_glass.is_none());

    // Only an active clinician of this clinic: not the front desk, not a stranger.
    for (someone, why) in [
        (front.user.user_id.to_string(), "not a clinician"),
        (Uuid::now_v7().to_string(), "no such user"),
    ] {
        refused_addition(
            &server,
            front.session_token.expose(),
            &add_path,
            &someone,
            why,
        )
        .await;
    }

    // Taken off again: the chart is outside their panel at once; a second removal is 404.
    let remove_path = format!("{add_path}/{}/remove", me.user_id);
    let (status, _) = server
        .post(&remove_path, Some(front.session_token.expose()), json!({}))
        .await;
    assert_eq!(status, 204);
    let chart = patient(&server, clinician.session_token.expose(), outside).await;
    assert_eq!(chart.clinical_access, ClinicalAccess::OutsideCareTeam);
    assert!(chart.clinical.is_none());
    let (status, _) = server
        .post(&remove_path, Some(front.session_token.expose()), json!({}))
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        refused_change(&server, "delete").await,
        (front.user.user_id, remove_path.clone())
    );

    // Nor a clinician of another clinic, nor this one's once an admin has deactivated them
    // (and neither refusal leaves an event: the lists below hold one change each).
    server.seed(0xB, "Other clinic").await;
    let stranger: String =
        sqlx::query_scalar("SELECT id FROM users WHERE clinic_id = $1 AND role = 'clinician'")
            .bind(Uuid::from_u128(0xB).to_string())
            .fetch_one(&server.owner_pool().await)
            .await
            .unwrap();
    let admin = device
        .login(&server, "admin", password_of(&report, "admin"))
        .await;
    let (status, body) = server
        .post(
            &format!("/v1/users/{}/deactivate", me.user_id),
            Some(admin.session_token.expose()),
            json!({}),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let offered = team(&server, front.session_token.expose(), outside).await;
    assert!(
        !offered.others.contains(&me),
        "a deactivated clinician is no longer offered"
    );
    for (someone, why) in [
        (stranger, "another clinic's clinician"),
        (me.user_id.to_string(), "a deactivated clinician"),
    ] {
        refused_addition(
            &server,
            front.session_token.expose(),
            &add_path,
            &someone,
            why,
        )
        .await;
    }

    // One event per change, by the front desk, about the patient, naming the clinician;
    // each look at the team is recorded as a read of it.
    for action in ["create", "delete"] {
        let events = team_events(&server, action, outside).await;
        let described: Vec<_> = events
            .iter()
            .map(|e| {
                (
                    e.actor_user_id,
                    e.resource_id.clone(),
                    e.outcome,
                    e.fields.clone(),
                )
            })
            .collect();
        assert_eq!(
            described,
            vec![(
                front.user.user_id,
                me.user_id.to_string(),
                Outcome::Success,
                vec!["members".to_owned()]
            )],
            "{action}"
        );
    }
    let reads = team_events(&server, "view", outside).await;
    assert_eq!(reads.len(), 3, "the front desk looked three times");
}
