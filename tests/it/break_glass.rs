//! Break-glass from the app core against the real server process: a clinician opens a
//! chart outside their care team with a reason, the workstation's own view event carries
//! the flag, the offline cache does not keep what the grant opened, and an admin
//! acknowledges the grant from the app (one of the two acknowledgements a grant needs by
//! default).

use clinicdesk_app::core::Core;
use clinicdesk_protocol::ErrorCode;
use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_protocol::wire::{BreakGlassReason, ClinicalAccess};
use clinicdesk_tests::{ServerProcess, code_of, enrolled_core, signature_valid, verify_chains};

const REASON: &str = "Covering the clinician's list this afternoon";

async fn drain(core: &Core) {
    while core.upload_once().await.unwrap() > 0 {}
    assert_eq!(core.status().outbox_pending, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clinician_breaks_the_glass_and_an_admin_acknowledges_it() {
    let mut server = ServerProcess::start();
    let app_dir = tempfile::tempdir().unwrap();
    let core = enrolled_core(&server, app_dir.path(), "Exam room 2").await;
    let password = server.seed.password("clinician").to_owned();
    server.sign_in(&core, "clinician", &password).await.unwrap();

    let list = core.appointments().await.unwrap();
    let mut outside = Vec::new();
    for a in &list.appointments {
        let p = core.open_patient(a.patient_id).await.unwrap();
        if p.clinical_access == ClinicalAccess::OutsideCareTeam {
            assert!(p.clinical.is_none());
            outside.push(p);
        } else {
            assert_eq!(p.clinical_access, ClinicalAccess::CareTeam);
        }
    }
    assert_eq!(outside.len(), 1);
    let patient = outside.remove(0);

    // A reason is required; the server says which field.
    let refused = core
        .break_glass(patient.id, BreakGlassReason::Emergency, "  ".into())
        .await
        .unwrap_err()
        .to_api();
    assert_eq!(
        (refused.code, refused.field.as_deref()),
        (ErrorCode::BadRequest, Some("reason_text"))
    );
    let opened = core
        .break_glass(
            patient.id,
            BreakGlassReason::CoveringColleague,
            REASON.into(),
        )
        .await
        .unwrap();
    assert_eq!(opened.clinical_access, ClinicalAccess::BreakGlass);
    assert!(opened.clinical.is_some());
    let grant = opened.break_glass.clone().unwrap();
    assert_eq!(grant.reason_code, BreakGlassReason::CoveringColleague);

    // The workstation's own view event says it was read under the grant, and why.
    drain(&core).await;
    let (_, device_key) = server.devices()[0];
    let flagged: Vec<_> = server
        .audit_events()
        .into_iter()
        .filter(|e| e.event.patient_id == Some(patient.id) && e.event.break_glass.is_some())
        .collect();
    assert_eq!(flagged.len(), 1);
    let view = &flagged[0];
    assert_eq!(view.event.action, AuditAction::View);
    assert!(view.event.fields.contains(&"allergies".to_owned()));
    let flag = view.event.break_glass.as_ref().unwrap();
    assert_eq!(
        (flag.reason_code.as_str(), flag.reason_text.as_str()),
        ("covering_colleague", REASON)
    );
    assert!(signature_valid(&device_key, view));

    // Offline, the cache has the chart as the care team would see it: no clinical summary,
    // and breaking the glass again needs the server.
    server.stop();
    let cached = core.open_patient(patient.id).await.unwrap();
    assert_eq!(cached.clinical_access, ClinicalAccess::OutsideCareTeam);
    assert!(cached.clinical.is_none() && cached.break_glass.is_none());
    let unreachable = core
        .break_glass(patient.id, BreakGlassReason::Emergency, REASON.into())
        .await
        .unwrap_err();
    assert_eq!(code_of(unreachable), ErrorCode::ServerUnreachable);
    server.restart();

    // The admin, on the same workstation, finds the grant waiting and acknowledges it.
    core.switch_user();
    let admin_password = server.seed.password("admin").to_owned();
    server
        .sign_in(&core, "admin", &admin_password)
        .await
        .unwrap();
    let waiting = core.break_glass_queue(true).await.unwrap();
    assert_eq!(waiting.grants.len(), 1);
    assert_eq!(waiting.grants[0].grant.grant_id, grant.grant_id);
    assert_eq!(waiting.grants[0].username, "clinician");
    assert_eq!(
        (
            waiting.grants[0].reviews_required,
            waiting.grants[0].short_of_reviewers
        ),
        (2, true),
        "two admins review a grant by default, and the demo clinic has one"
    );
    core.review_break_glass(grant.grant_id, "Checked the rota: covering".into())
        .await
        .unwrap();
    let still = core.break_glass_queue(true).await.unwrap();
    assert_eq!(still.grants.len(), 1);
    assert_eq!(still.grants[0].reviews.len(), 1);
    assert!(still.grants[0].reviewed.is_none());
    let again = core
        .review_break_glass(grant.grant_id, "twice".into())
        .await
        .unwrap_err();
    assert_eq!(code_of(again), ErrorCode::Conflict);
    let reviewed: Vec<_> = server
        .server_events()
        .into_iter()
        .filter(|e| e.event.action == AuditAction::BreakGlassReviewed)
        .collect();
    assert_eq!(reviewed.len(), 1);
    assert_eq!(reviewed[0].event.actor_user_id, server.user_id("admin"));
    assert_eq!(reviewed[0].event.patient_id, Some(patient.id));

    drain(&core).await;
    verify_chains(&server);
}
