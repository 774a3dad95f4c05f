//! The schedule as records, through the real server: the front desk books, reschedules,
//! checks in and cancels; each change is a version with its audit event; a practitioner's
//! time is never double-booked; a check-in opens the visit's encounter; the status follows
//! FHIR's course; each role sees the fields the table gives it; verify checks it all.

use clinicdesk_protocol::audit::AuditEvent;
use clinicdesk_protocol::policy::fields::{Resource, field_access};
use clinicdesk_protocol::wire::{
    AppointmentFields, AppointmentHistory, AppointmentRecord, AppointmentStatus,
};
use clinicdesk_server::audit::key::PublicKey;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{SignedIn, TestServer, every_role, password_of};

async fn book(server: &TestServer, token: &str, fields: Value) -> (u16, Value) {
    server
        .post("/v1/appointments", Some(token), json!({ "fields": fields }))
        .await
}

async fn change(
    server: &TestServer,
    token: &str,
    id: &str,
    version: u64,
    body: Value,
) -> (u16, Value) {
    server
        .patch(&format!("/v1/appointments/{id}"), token, version, body)
        .await
}

async fn read(server: &TestServer, token: &str, id: &str) -> AppointmentRecord {
    let (status, body) = server.get(&format!("/v1/appointments/{id}"), token).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).unwrap()
}

/// Two patients of the seeded clinic.
async fn patients(server: &TestServer, clinic: Uuid) -> (String, String) {
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM patients WHERE clinic_id = $1 ORDER BY id LIMIT 2")
            .bind(clinic.to_string())
            .fetch_all(&server.owner_pool().await)
            .await
            .unwrap();
    (ids[0].clone(), ids[1].clone())
}

#[tokio::test]
async fn the_front_desk_books_reschedules_checks_in_and_cancels_each_change_recorded() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login,
    } = server.signed_in(0xA, "frontdesk").await;
    let front = login.session_token.expose();
    let clinician = device
        .login(&server, "clinician", password_of(&report, "clinician"))
        .await;
    let doctor = clinician.user.user_id;
    let (p1, p2) = patients(&server, report.clinic_id).await;
    // Who can be booked: the clinic's active clinicians, by name.
    let (status, body) = server.get("/v1/practitioners", front).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["practitioners"],
        json!([{ "user_id": doctor, "display_name": clinician.user.display_name }])
    );
    let (status, _) = server
        .get("/v1/practitioners", clinician.session_token.expose())
        .await;
    assert_eq!(status, 403, "booking is the front desk's");

    let slot = |patient: &str, start: &str| {
        json!({ "patient_id": patient, "practitioner_id": doctor, "start": start,
                "duration_mins": 30, "appointment_type": "followup", "reason": "Synthetic check" })
    };
    let (status, body) = book(&server, front, slot(&p1, "2026-11-24T15:00:00Z")).await;
    assert_eq!(status, 201, "{body}");
    let first = body["id"].as_str().unwrap().to_owned();
    // The doctor's half hour is taken: another patient at 15:15 is refused by the field.
    let (status, body) = book(&server, front, slot(&p2, "2026-11-24T15:15:00Z")).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (409, Some("start")),
        "{body}"
    );
    // Back to back is fine; an offset in the request is the same instant.
    let (status, body) = book(&server, front, slot(&p2, "2026-11-24T10:30:00-05:00")).await;
    assert_eq!(status, 201, "{body}");
    let second = body["id"].as_str().unwrap().to_owned();

    let record = read(&server, front, &first).await;
    assert_eq!(record.version, 1);
    assert_eq!(record.fields.status, Some(AppointmentStatus::Booked));
    assert_eq!(
        record.fields.start.as_deref(),
        Some("2026-11-24T15:00:00+00:00")
    );

    // Rescheduled to 16:00; a change based on version 1 is now stale.
    let (status, _) = change(
        &server,
        front,
        &first,
        1,
        json!({ "fields": { "start": "2026-11-24T16:00:00Z" },
        "reason_for_change": "patient asked" }),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = change(
        &server,
        front,
        &first,
        1,
        json!({ "fields": { "duration_mins": 45 } }),
    )
    .await;
    assert_eq!((status, body["current_version"].as_u64()), (409, Some(2)));
    assert_eq!(body["fields"], json!(["start"]));

    // Checked in: the visit's encounter opens, once.
    let (status, body) = change(
        &server,
        front,
        &first,
        2,
        json!({ "fields": { "status": "checked-in" } }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let checked_in = read(&server, front, &first).await;
    assert!(checked_in.encounter_id.is_some());
    let encounters: Vec<AuditEvent> = server
        .events_of("create")
        .await
        .into_iter()
        .filter(|e| e.resource_type == "Encounter")
        .collect();
    assert_eq!(encounters.len(), 1);
    assert_eq!(
        encounters[0].resource_id,
        checked_in.encounter_id.unwrap().to_string()
    );
    // The status follows FHIR's course: a checked-in visit is not booked again.
    let (status, body) = change(
        &server,
        front,
        &first,
        3,
        json!({ "fields": { "status": "booked" } }),
    )
    .await;
    assert_eq!((status, body["field"].as_str()), (400, Some("status")));

    // Cancelled, with its reason (without one it is refused); its time is free again.
    let (status, body) = change(
        &server,
        front,
        &second,
        1,
        json!({ "fields": { "status": "cancelled" } }),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("cancellation_reason"))
    );
    let (status, _) = change(
        &server,
        front,
        &second,
        1,
        json!({ "fields": { "status": "cancelled",
        "cancellation_reason": "patient unwell" } }),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = book(&server, front, slot(&p2, "2026-11-24T15:30:00Z")).await;
    assert_eq!(status, 201, "{body}");

    // The history: every version, what changed and why.
    let (status, body) = server
        .get(&format!("/v1/appointments/{first}/history"), front)
        .await;
    assert_eq!(status, 200, "{body}");
    let history: AppointmentHistory = serde_json::from_value(body).unwrap();
    let changed: Vec<Vec<String>> = history.versions.iter().map(|v| v.changed.clone()).collect();
    assert_eq!(
        changed[1..],
        [vec!["start".to_owned()], vec!["status".to_owned()]]
    );
    assert_eq!(history.versions[1].reason.expose(), "patient asked");
    assert_eq!(
        history.versions[0].fields.start.as_deref(),
        Some("2026-11-24T15:00:00+00:00")
    );
    // The day list shows each appointment's status and practitioner.
    let (_, day) = server.get("/v1/appointments?date=2026-11-24", front).await;
    let statuses: Vec<&str> = day["appointments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["practitioner_id"] == json!(doctor))
        .map(|a| a["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["cancelled", "booked", "checked-in"]);

    let audit_key = PublicKey::from_hex(&device.audit_public_key).unwrap();
    crate::harness::verify_trail(&server.store, &audit_key, &[])
        .await
        .unwrap();
    // The operator's verify too, which also checks every appointment's columns against its
    // content after each kind of change.
    crate::harness::cli_ok(&server, &["audit", "verify"]);
}

#[tokio::test]
async fn each_role_sees_and_changes_the_schedule_as_the_table_says() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login,
    } = server.signed_in(0xA, "frontdesk").await;
    let front = login.session_token.expose().to_owned();
    let sessions = every_role(&server, &report, &device).await;
    let doctor: String =
        sqlx::query_scalar("SELECT id FROM users WHERE clinic_id = $1 AND role = 'clinician'")
            .bind(report.clinic_id.to_string())
            .fetch_one(&server.owner_pool().await)
            .await
            .unwrap();
    let (p1, _) = patients(&server, report.clinic_id).await;
    let (status, body) = book(
        &server,
        &front,
        json!({ "patient_id": p1, "practitioner_id": doctor,
        "start": "2026-11-25T09:00:00Z", "duration_mins": 15, "reason": "Synthetic" }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();

    for (role, token) in &sessions {
        let (status, body) = server.get(&format!("/v1/appointments/{id}"), token).await;
        let table: Vec<&str> = AppointmentFields::NAMES
            .iter()
            .copied()
            .filter(|f| field_access(*role, Resource::Appointment, f).reads())
            .collect();
        if table.is_empty() {
            assert_eq!(status, 403, "{role:?}");
        } else {
            assert_eq!(status, 200, "{role:?}");
            let mut keys: Vec<&str> = body["fields"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            keys.sort_unstable();
            let mut want = table.clone();
            want.sort_unstable();
            assert_eq!(keys, want, "{role:?}");
        }
        let (status, _) = change(
            &server,
            token,
            &id,
            1,
            json!({ "fields": { "duration_mins": 20 } }),
        )
        .await;
        let writes = field_access(*role, Resource::Appointment, "duration_mins").writes();
        assert_eq!(status, if writes { 200 } else { 403 }, "{role:?}");
    }

    // What no booking may be, each refused by its field.
    for (field, value) in [
        ("practitioner_id", json!(login.user.user_id)),
        ("patient_id", json!(Uuid::now_v7())),
        ("duration_mins", json!(0)),
        ("start", json!("tomorrow at nine")),
        ("appointment_type", json!("vip")),
    ] {
        let mut fields = json!({ "patient_id": p1, "practitioner_id": doctor,
            "start": "2026-11-26T09:00:00Z", "duration_mins": 15, "reason": "Synthetic" });
        fields[field] = value;
        let (status, body) = book(&server, &front, fields).await;
        assert_eq!(
            (status, body["field"].as_str()),
            (400, Some(field)),
            "{body}"
        );
    }
}

/// The columns the day list and the double-booking check read are checked against each
/// appointment's content by `audit verify`: an appointment cancelled or moved in its columns
/// alone (so the day list shows a free slot that is not) is named.
#[tokio::test]
async fn audit_verify_names_an_appointment_whose_columns_were_edited() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login,
    } = server.signed_in(0xA, "frontdesk").await;
    let front = login.session_token.expose();
    let doctor = device
        .login(&server, "clinician", password_of(&report, "clinician"))
        .await
        .user
        .user_id;
    let (p1, _) = patients(&server, report.clinic_id).await;
    let (status, body) = book(
        &server,
        front,
        json!({ "patient_id": p1, "practitioner_id": doctor, "start": "2026-11-25T15:00:00Z",
                "duration_mins": 30, "appointment_type": "followup", "reason": "Synthetic check" }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    crate::harness::cli_ok(&server, &["audit", "verify"]);

    sqlx::query(
        "UPDATE appointments SET status = 'cancelled', starts_at_ms = starts_at_ms + 3600000
         WHERE id = $1",
    )
    .bind(&id)
    .execute(&server.owner_pool().await)
    .await
    .unwrap();
    let out = crate::harness::run_cli(&server, &["audit", "verify"]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "verify passed an edited appointment");
    for column in ["status", "starts_at_ms"] {
        assert!(
            said.lines()
                .any(|l| l.contains(&format!("appointment {id}")) && l.contains(column)),
            "{column} not named: {said}"
        );
    }
    assert!(!said.contains("Synthetic check"), "no value is printed");
}
