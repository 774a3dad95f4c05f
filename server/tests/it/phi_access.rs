//! Server-side auditing of PHI responses: every PHI route of the policy table records a
//! server-signed event with every field filled, refusals are recorded as denied (also a
//! role the policy table turns away before any handler), and when the event cannot be
//! stored the caller gets no PHI.

use clinicdesk_server::store::Backend;
use std::collections::BTreeMap;

use clinicdesk_protocol::audit::{AuditAction, AuditEvent, Outcome, Recorder, SignedAuditEvent};
use clinicdesk_protocol::policy::{self, Role};
use clinicdesk_protocol::wire::AppointmentList;
use clinicdesk_server::audit::key::{PublicKey, verify_hex};
use clinicdesk_server::audit::verify::{Location, Problem, VerifyError};
use sqlx::Row;
use uuid::Uuid;

use crate::harness::{SignedIn, TestServer, password_of};

const USER_AGENT: &str = "clinicdesk-phi-access-test/1.0";

/// The server's own events of the test clinic, oldest first.
/// The server's events about PHI (not those about accounts, such as second factors set up
/// at sign-in).
async fn server_events(server: &TestServer) -> Vec<SignedAuditEvent> {
    let rows = sqlx::query(
        "SELECT e.event_json, e.signature FROM audit_events e JOIN devices d ON d.id = e.device_id
         WHERE d.kind = 'server' AND e.action NOT IN ('mfa_enrolled', 'mfa_reset', 'device_enrolled')
         ORDER BY e.device_seq",
    )
    .fetch_all(&server.owner_pool().await)
    .await
    .unwrap();
    rows.iter()
        .map(|r| SignedAuditEvent {
            event: serde_json::from_str::<AuditEvent>(r.get::<&str, _>(0)).unwrap(),
            signature: r.get(1),
        })
        .collect()
}

async fn get_as(server: &TestServer, path: &str, token: &str) -> (u16, String) {
    let resp = server
        .client()
        .get(format!("{}{path}", server.url))
        .bearer_auth(token)
        .header(reqwest::header::USER_AGENT, USER_AGENT)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn every_phi_route_records_a_signed_server_event_with_every_field() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login,
    } = server.signed_in(0xA, "clinician").await;
    let token = login.session_token.expose();
    // Signed in before any PHI is read, so that the PHI events follow each other in the
    // server chain (this sign-in's second factor set-up is an account event).
    let front = device
        .login(&server, "frontdesk", password_of(&report, "frontdesk"))
        .await;
    let (_, body) = get_as(&server, "/v1/appointments", token).await;
    let list: AppointmentList = serde_json::from_str(&body).unwrap();
    let patient = list.appointments[0].patient_id;
    // A registered patient, so that its history has a version to disclose.
    let (status, body) = server
        .post(
            "/v1/patients",
            Some(front.session_token.expose()),
            serde_json::json!({ "fields": { "name": { "given": "Ivy", "family": "Synthetic" },
                                            "birth_date": "1990-01-01" } }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let registered = body["id"].as_str().unwrap().to_owned();
    // A booked appointment, so that its history has a version to disclose.
    let (status, body) = server
        .post(
            "/v1/appointments",
            Some(front.session_token.expose()),
            serde_json::json!({ "fields": { "patient_id": patient,
                "practitioner_id": login.user.user_id, "start": "2026-11-24T15:00:00Z",
                "duration_mins": 20, "reason": "Follow-up" } }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let booked = body["id"].as_str().unwrap().to_owned();
    // A coverage with a version, for its history.
    let (status, body) = server
        .post(
            &format!("/v1/patients/{registered}/coverages"),
            Some(front.session_token.expose()),
            serde_json::json!({ "fields": { "payer": "Synthetic Mutual", "member_id": "M-9" } }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let insured = body["id"].as_str().unwrap().to_owned();

    // A concrete request for each PHI route template, by a role that may make it; a new PHI
    // route without one fails here.
    let concrete: BTreeMap<&str, (String, _)> = [
        ("/v1/appointments", ("/v1/appointments".to_owned(), &login)),
        (
            "/v1/patients/{patient_id}",
            (format!("/v1/patients/{patient}"), &login),
        ),
        (
            "/v1/patients/{patient_id}/care-team",
            (format!("/v1/patients/{patient}/care-team"), &front),
        ),
        ("/v1/patients", ("/v1/patients?q=ivy".to_owned(), &front)),
        (
            "/v1/day/patients",
            (format!("/v1/day/patients?date={}", list.date), &front),
        ),
        (
            "/v1/sync/patients",
            (
                format!("/v1/sync/patients?from={0}&to={0}", list.date),
                &front,
            ),
        ),
        (
            "/v1/patients/{patient_id}/coverages",
            (format!("/v1/patients/{registered}/coverages"), &front),
        ),
        (
            "/v1/coverages/{coverage_id}/history",
            (format!("/v1/coverages/{insured}/history"), &front),
        ),
        (
            "/v1/appointments/{appointment_id}",
            (
                format!("/v1/appointments/{}", list.appointments[0].id),
                &login,
            ),
        ),
        (
            "/v1/appointments/{appointment_id}/history",
            (format!("/v1/appointments/{booked}/history"), &front),
        ),
        (
            "/v1/fhir/Patient/{patient_id}",
            (format!("/v1/fhir/Patient/{patient}"), &login),
        ),
        (
            "/v1/fhir/Patient/{patient_id}/$everything",
            (format!("/v1/fhir/Patient/{patient}/$everything"), &login),
        ),
        (
            "/v1/patients/{patient_id}/record",
            (format!("/v1/patients/{patient}/record"), &login),
        ),
        (
            "/v1/patients/{patient_id}/history",
            (format!("/v1/patients/{registered}/history"), &front),
        ),
    ]
    .into_iter()
    .collect();
    let phi_routes: Vec<_> = policy::ROUTES.iter().filter(|r| r.phi.is_some()).collect();
    let mut templates: Vec<_> = phi_routes.iter().map(|r| r.path).collect();
    templates.sort_unstable();
    assert_eq!(
        templates,
        concrete.keys().copied().collect::<Vec<_>>(),
        "every PHI route needs a concrete request in this test"
    );

    let audit_key = PublicKey::from_hex(&device.audit_public_key).unwrap();
    for rule in phi_routes {
        let phi = rule.phi.unwrap();
        let before = server_events(&server).await.len();
        let (path, who) = &concrete[rule.path];
        let (status, _) = get_as(&server, path, who.session_token.expose()).await;
        assert_eq!(status, 200, "{}", rule.path);
        let events = server_events(&server).await;
        let new = &events[before..];
        let expected = if rule.path == "/v1/appointments" {
            list.appointments.len()
        } else if rule.path == "/v1/day/patients" || rule.path == "/v1/sync/patients" {
            // One per patient booked that day.
            let mut patients: Vec<_> = list.appointments.iter().map(|a| a.patient_id).collect();
            patients.sort_unstable();
            patients.dedup();
            patients.len()
        } else {
            1
        };
        assert_eq!(new.len(), expected, "{}", rule.path);
        for signed in new {
            let e = &signed.event;
            assert!(verify_hex(
                &audit_key,
                &e.canonical_bytes(),
                &signed.signature
            ));
            assert_eq!(e.recorded_by, Recorder::Server);
            assert_eq!(e.clinic_id, report.clinic_id);
            assert_eq!(e.actor_user_id, who.user.user_id);
            assert_eq!(e.actor_role, who.user.role);
            assert_eq!(e.action, phi.action);
            assert_eq!(e.resource_type, phi.resource_type);
            assert!(!e.resource_id.is_empty());
            assert!(e.patient_id.is_some());
            assert!(!e.fields.is_empty());
            assert_eq!(e.outcome, Outcome::Success);
            assert_eq!(e.route, rule.path);
            assert!(!e.offline);
            let seen = e.request.as_ref().unwrap();
            assert_eq!(seen.client_ip, "127.0.0.1");
            assert_eq!(seen.user_agent, USER_AGENT);
            assert_eq!(seen.session_device_id, Some(device.id));
        }
    }
    let viewed = events_about(&server_events(&server).await, patient);
    assert!(
        viewed
            .iter()
            .any(|e| e.resource_type == "Patient" && e.fields.contains(&"allergies".to_owned())),
        "the clinician's chart view names the clinical fields read"
    );

    // The server chain is a chain, in the log, and the whole trail verifies.
    let events = server_events(&server).await;
    for (i, pair) in events.windows(2).enumerate() {
        assert_eq!(pair[1].event.prev_hash, pair[0].event.hash(), "link {i}");
        assert_eq!(pair[1].event.device_seq, pair[0].event.device_seq + 1);
    }
    let verified = crate::harness::verify_trail(&server.store, &audit_key, &[])
        .await
        .unwrap();
    let account_events: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_events WHERE action IN ('mfa_enrolled', 'mfa_reset', 'device_enrolled')",
    )
    .fetch_one(&server.owner_pool().await)
    .await
    .unwrap();
    assert_eq!(
        verified.events,
        events.len() as u64 + u64::try_from(account_events).unwrap()
    );
}

fn events_about(events: &[SignedAuditEvent], patient: Uuid) -> Vec<AuditEvent> {
    events
        .iter()
        .filter(|s| s.event.patient_id == Some(patient))
        .map(|s| s.event.clone())
        .collect()
}

#[tokio::test]
async fn a_refused_phi_request_is_recorded_as_denied() {
    let server = TestServer::start().await;
    let SignedIn { login, .. } = server.signed_in(0xA, "frontdesk").await;
    let missing = Uuid::now_v7();
    let path = format!("/v1/patients/{missing}");
    let (status, _) = get_as(&server, &path, login.session_token.expose()).await;
    assert_eq!(status, 404);
    let events = server_events(&server).await;
    let e = &events.last().unwrap().event;
    assert_eq!(e.outcome, Outcome::Denied);
    assert_eq!(e.action, AuditAction::View);
    assert_eq!(e.resource_id, path);
    assert_eq!(
        e.patient_id, None,
        "an unconfirmed id is not named as a patient"
    );
    assert_eq!(e.actor_user_id, login.user.user_id);
}

#[tokio::test]
async fn a_role_the_policy_table_refuses_is_recorded_as_denied_too() {
    let server = TestServer::start().await;
    let SignedIn { login: admin, .. } = server.signed_in(0xA, "admin").await;
    let patient = Uuid::now_v7();
    // Admins see no clinical content: refused before any handler runs, and recorded.
    for path in [
        "/v1/appointments".to_owned(),
        format!("/v1/patients/{patient}"),
    ] {
        let before = server_events(&server).await.len();
        let (status, body) = get_as(&server, &path, admin.session_token.expose()).await;
        assert_eq!(status, 403, "{body}");
        let events = server_events(&server).await;
        assert_eq!(
            events.len(),
            before + 1,
            "{path}: one event for the refusal"
        );
        let e = &events.last().unwrap().event;
        assert_eq!(
            (e.outcome, e.action, e.resource_id.as_str()),
            (Outcome::Denied, AuditAction::View, path.as_str())
        );
        assert_eq!(
            (e.actor_user_id, e.actor_role),
            (admin.user.user_id, Role::Admin)
        );
        assert_eq!(e.patient_id, None);
        let seen = e.request.as_ref().unwrap();
        assert_eq!(seen.user_agent, USER_AGENT);
        assert_eq!(seen.client_ip, "127.0.0.1");
    }
    // A refusal of a route that serves no PHI is not a PHI event.
    let before = server_events(&server).await.len();
    let SignedIn {
        login: clinician, ..
    } = server.signed_in(0xB, "clinician").await;
    let (status, _) = get_as(&server, "/v1/users", clinician.session_token.expose()).await;
    assert_eq!(status, 403);
    assert_eq!(server_events(&server).await.len(), before);
}

#[tokio::test]
async fn no_audit_no_access() {
    let server = TestServer::start().await;
    let SignedIn { login, .. } = server.signed_in(0xA, "clinician").await;
    let token = login.session_token.expose();
    let (_, body) = get_as(&server, "/v1/appointments", token).await;
    let list: AppointmentList = serde_json::from_str(&body).unwrap();
    let appt = &list.appointments[0];
    let name = appt.patient_name.expose().clone();

    // The store refuses every new audit event, as a full disk or a broken database would.
    let owner = server.owner_pool().await;
    let (refuse, allow) = match server.store.backend() {
        Backend::Sqlite => (
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events
             BEGIN SELECT RAISE(ABORT, 'audit store unavailable'); END",
            "DROP TRIGGER refuse_audit",
        ),
        Backend::Postgres => (
            "REVOKE INSERT ON audit_events FROM clinicdesk_app",
            "GRANT INSERT ON audit_events TO clinicdesk_app",
        ),
    };
    sqlx::query(refuse).execute(&owner).await.unwrap();
    let before = server_events(&server).await.len();
    for path in [
        "/v1/appointments".to_owned(),
        format!("/v1/patients/{}", appt.patient_id),
    ] {
        let (status, body) = get_as(&server, &path, token).await;
        assert_eq!(status, 500, "{path}");
        assert_eq!(body, r#"{"code":"internal"}"#, "{path}");
        assert!(!body.contains(&name));
    }
    assert_eq!(server_events(&server).await.len(), before);

    sqlx::query(allow).execute(&owner).await.unwrap();
    let (status, body) = get_as(&server, "/v1/appointments", token).await;
    assert_eq!(status, 200);
    assert!(body.contains(&name));
}

/// A workstation cannot pass its events off as the server's, nor claim what the server saw,
/// and the server chain is no device: it cannot sign in or upload.
#[tokio::test]
async fn devices_cannot_record_as_the_server() {
    use crate::audit_log::{event, sign};
    use clinicdesk_protocol::audit::{Hash32, RequestSeen};
    use serde_json::json;

    let server = TestServer::start().await;
    let SignedIn { device, login, .. } = server.signed_in(0xA, "clinician").await;
    let mut as_server = event(&device, login.user.user_id, 1, Hash32::GENESIS);
    as_server.recorded_by = Recorder::Server;
    let mut with_request = event(&device, login.user.user_id, 1, Hash32::GENESIS);
    with_request.request = Some(RequestSeen {
        client_ip: "10.0.0.1".into(),
        user_agent: String::new(),
        session_device_id: None,
    });
    for (e, field) in [(as_server, "recorded_by"), (with_request, "request")] {
        let (status, body) = server
            .post(
                "/v1/audit/batches",
                None,
                json!({ "device_id": device.id, "events": [sign(&device, e)] }),
            )
            .await;
        assert_eq!((status, body["field"].as_str()), (400, Some(field)));
    }

    // Make the clinic's server chain exist, then try to use it as a workstation.
    let (status, _) = get_as(&server, "/v1/appointments", login.session_token.expose()).await;
    assert_eq!(status, 200);
    let chain: String = sqlx::query_scalar("SELECT id FROM devices WHERE kind = 'server'")
        .fetch_one(&server.owner_pool().await)
        .await
        .unwrap();
    let (status, body) = server
        .post("/v1/auth/challenge", None, json!({ "device_id": chain }))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("device_unknown"))
    );
}

/// A PHI handler that forgets to say what it disclosed (returns plain JSON instead of
/// `Served`) gets its response replaced by `internal`: the mechanism fails closed.
#[tokio::test]
async fn a_phi_handler_that_does_not_declare_its_disclosure_sends_nothing() {
    use clinicdesk_server::http::router::{RouteDef, build_router_from, route_defs};

    async fn leaky() -> axum::Json<serde_json::Value> {
        axum::Json(serde_json::json!({ "name": "Leaky Canary" }))
    }
    let server = TestServer::start_with(|state| {
        let defs = route_defs()
            .into_iter()
            .map(|d| {
                if d.method == "GET" && d.path == "/v1/patients/{patient_id}" {
                    RouteDef {
                        handler: axum::routing::get(leaky),
                        ..d
                    }
                } else {
                    d
                }
            })
            .collect();
        build_router_from(state, defs).unwrap()
    })
    .await;
    let SignedIn { login, .. } = server.signed_in(0xA, "clinician").await;
    let (status, body) = get_as(
        &server,
        &format!("/v1/patients/{}", Uuid::now_v7()),
        login.session_token.expose(),
    )
    .await;
    assert_eq!((status, body.as_str()), (500, r#"{"code":"internal"}"#));
    assert!(server_events(&server).await.is_empty());
}

#[tokio::test]
async fn reading_the_audit_trail_is_recorded_too() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login: admin,
    } = server.signed_in(0xA, "admin").await;
    let patient: String = sqlx::query_scalar("SELECT min(id) FROM patients WHERE clinic_id = $1")
        .bind(report.clinic_id.to_string())
        .fetch_one(&server.owner_pool().await)
        .await
        .unwrap();
    let patient = Uuid::parse_str(&patient).unwrap();
    // Searches, proofs, reports, exports and the break-glass queue (reasons in free text)
    // are each recorded, naming the request (which names the patient asked about).
    for (path, action) in [
        (
            format!("/v1/audit/events?patient_id={patient}&limit=5"),
            AuditAction::View,
        ),
        (
            format!("/v1/audit/patients/{patient}/report"),
            AuditAction::View,
        ),
        ("/v1/audit/checkpoint".to_owned(), AuditAction::View),
        (
            "/v1/audit/export?format=csv".to_owned(),
            AuditAction::Export,
        ),
        ("/v1/audit/access-review".to_owned(), AuditAction::Export),
        ("/v1/break-glass".to_owned(), AuditAction::View),
    ] {
        let before = server_events(&server).await.len();
        let (status, body) = get_as(&server, &path, admin.session_token.expose()).await;
        assert_eq!(status, 200, "{path}: {body}");
        let events = server_events(&server).await;
        assert_eq!(events.len(), before + 1, "{path}: one event per request");
        let e = &events.last().unwrap().event;
        assert_eq!(
            (e.action, e.resource_type.as_str(), e.resource_id.as_str()),
            (action, "AuditTrail", path.as_str())
        );
        // Not an access to the patient's record, so not in their access report.
        assert_eq!((e.outcome, e.patient_id), (Outcome::Success, None));
        assert_eq!(
            (e.actor_user_id, e.actor_role),
            (admin.user.user_id, Role::Admin)
        );
        assert_eq!(e.request.as_ref().unwrap().user_agent, USER_AGENT);
    }
    // Only the trail's own parameters, with id-like values, are kept: free text someone put
    // into the URL never reaches the trail.
    let (status, _) = get_as(
        &server,
        &format!("/v1/audit/events?name=CANARY-Jane-Doe&patient_id={patient}&note=a%20b"),
        admin.session_token.expose(),
    )
    .await;
    assert_eq!(status, 200);
    let events = server_events(&server).await;
    let e = &events.last().unwrap().event;
    assert_eq!(
        e.resource_id,
        format!("/v1/audit/events?patient_id={patient}")
    );
    assert!(!serde_json::to_string(e).unwrap().contains("CANARY"));

    // A clinician may not read the trail: refused, and the attempt recorded.
    let clinician = device
        .login(&server, "clinician", password_of(&report, "clinician"))
        .await;
    let path = format!("/v1/audit/patients/{patient}/report");
    let (status, _) = get_as(&server, &path, clinician.session_token.expose()).await;
    assert_eq!(status, 403);
    let events = server_events(&server).await;
    let e = &events.last().unwrap().event;
    assert_eq!(
        (e.outcome, e.resource_type.as_str(), e.actor_user_id),
        (Outcome::Denied, "AuditTrail", clinician.user.user_id)
    );
}

/// The columns a patient's access report selects on are checked by `audit verify` like the
/// signed event they index, on either backend: an insider who gives a chart view to another
/// patient with SQL (hiding it from the patient's report) is named by the event, its leaf
/// and the column.
#[tokio::test]
async fn a_report_column_changed_behind_the_servers_back_is_named_by_verify() {
    let server = TestServer::start().await;
    let SignedIn { device, login, .. } = server.signed_in(0xA, "clinician").await;
    let token = login.session_token.expose();
    let (_, body) = get_as(&server, "/v1/appointments", token).await;
    let list: AppointmentList = serde_json::from_str(&body).unwrap();
    let patient = list.appointments[0].patient_id;
    let (status, _) = get_as(&server, &format!("/v1/patients/{patient}"), token).await;
    assert_eq!(status, 200);
    let audit_key = PublicKey::from_hex(&device.audit_public_key).unwrap();
    crate::harness::verify_trail(&server.store, &audit_key, &[])
        .await
        .unwrap();
    let view = events_about(&server_events(&server).await, patient)
        .into_iter()
        .find(|e| e.resource_type == "Patient")
        .unwrap()
        .id;

    // As the database's owner, past the append-only guard (a trigger on SQLite; on
    // PostgreSQL the owner is not bound by the application role's grants).
    let owner = server.owner_pool().await;
    if server.store.backend() == Backend::Sqlite {
        sqlx::query("DROP TRIGGER audit_events_no_update")
            .execute(&owner)
            .await
            .unwrap();
    }
    sqlx::query("UPDATE audit_events SET patient_id = $1 WHERE id = $2")
        .bind(Uuid::now_v7().to_string())
        .bind(view.to_string())
        .execute(&owner)
        .await
        .unwrap();
    let leaf: i64 = sqlx::query_scalar("SELECT leaf_index FROM audit_events WHERE id = $1")
        .bind(view.to_string())
        .fetch_one(&owner)
        .await
        .unwrap();
    let found = crate::harness::verify_trail(&server.store, &audit_key, &[]).await;
    let Err(VerifyError::Tampered(found)) = found else {
        panic!("a changed patient_id went unnoticed: {found:?}");
    };
    let named = crate::tamper::named(&found);
    assert_eq!(
        named,
        [(
            Location::Event {
                event_id: view,
                leaf_index: u64::try_from(leaf).unwrap(),
            },
            Problem::Column("patient_id"),
        )]
    );
}
