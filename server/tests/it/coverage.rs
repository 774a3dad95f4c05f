//! A patient's insurance, through the real server: the front desk adds a coverage, billing
//! corrects it, clinicians read it, admins see none of it; each change a version with its
//! audit event; a stale change is a conflict naming what changed; never deleted.

use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::policy::fields::{Resource, field_access};
use clinicdesk_protocol::wire::{CoverageFields, CoverageHistory, CoverageList};
use clinicdesk_server::audit::key::PublicKey;
use serde_json::{Value, json};

use crate::harness::{SignedIn, TestServer, every_role, route_events};

async fn patch(
    server: &TestServer,
    token: &str,
    id: &str,
    version: u64,
    body: Value,
) -> (u16, Value) {
    server
        .patch(&format!("/v1/coverages/{id}"), token, version, body)
        .await
}

#[tokio::test]
async fn coverage_is_kept_by_the_front_desk_and_billing_as_the_table_says() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login,
    } = server.signed_in(0xA, "frontdesk").await;
    let front = login.session_token.expose().to_owned();
    let sessions = every_role(&server, &report, &device).await;
    let billing = &sessions[2].1;
    let patient: String = sqlx::query_scalar("SELECT min(id) FROM patients WHERE clinic_id = $1")
        .bind(report.clinic_id.to_string())
        .fetch_one(&server.owner_pool().await)
        .await
        .unwrap();
    let path = format!("/v1/patients/{patient}/coverages");

    // Payer and member id are required; dates are dates, and the period runs forwards.
    for (fields, field) in [
        (json!({ "member_id": "M-1" }), "payer"),
        (
            json!({ "payer": "Synthetic Health", "member_id": "M-1", "period_start": "2026-02-30" }),
            "period_start",
        ),
        (
            json!({ "payer": "Synthetic Health", "member_id": "M-1", "period_start": "2026-02-01",
                 "period_end": "2026-01-01" }),
            "period_end",
        ),
    ] {
        let (status, body) = server
            .post(&path, Some(&front), json!({ "fields": fields }))
            .await;
        assert_eq!(
            (status, body["field"].as_str()),
            (400, Some(field)),
            "{body}"
        );
    }
    let (status, body) = server
        .post(
            &path,
            Some(&front),
            json!({ "fields": { "payer": "Synthetic Health",
            "member_id": "M-100", "group": "G-7", "subscriber_relationship": "spouse",
            "period_start": "2026-01-01" } }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();

    // Billing corrects the member id; the front desk's change based on version 1 is stale.
    let (status, _) = patch(
        &server,
        billing,
        &id,
        1,
        json!({ "fields": { "member_id": "M-101" },
        "reason": "card re-read" }),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = patch(
        &server,
        &front,
        &id,
        1,
        json!({ "fields": { "group": "G-8" } }),
    )
    .await;
    assert_eq!(
        (status, body["fields"].clone()),
        (409, json!(["member_id"]))
    );
    // Ended, not deleted.
    let (status, _) = patch(
        &server,
        &front,
        &id,
        2,
        json!({ "fields": { "active": false,
        "period_end": "2026-06-30" } }),
    )
    .await;
    assert_eq!(status, 200);

    // Every role reads the fields the table gives it, and writes where it says so.
    for (role, token) in &sessions {
        let table: Vec<&str> = CoverageFields::NAMES
            .iter()
            .copied()
            .filter(|f| field_access(*role, Resource::Coverage, f).reads())
            .collect();
        let (status, body) = server.get(&path, token).await;
        if table.is_empty() {
            assert_eq!(status, 403, "{role:?}");
        } else {
            assert_eq!(status, 200, "{role:?}");
            let list: CoverageList = serde_json::from_value(body.clone()).unwrap();
            // The seeded one, and this one.
            assert_eq!(list.coverages.len(), 2);
            let ours = list
                .coverages
                .iter()
                .position(|c| c.id.to_string() == id)
                .unwrap();
            let mut keys: Vec<&str> = body["coverages"][ours]["fields"]
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
    }
    for (n, (role, token)) in sessions.iter().enumerate() {
        let (_, list) = server.get(&path, &front).await;
        let version = list["coverages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == json!(id))
            .unwrap()["version"]
            .as_u64()
            .unwrap();
        let group = format!("G-{n}0");
        let (status, _) = patch(
            &server,
            token,
            &id,
            version,
            json!({ "fields": { "group": group } }),
        )
        .await;
        let writes = field_access(*role, Resource::Coverage, "group").writes();
        assert_eq!(status, if writes { 200 } else { 403 }, "{role:?}");
    }

    let (status, body) = server
        .get(&format!("/v1/coverages/{id}/history"), billing)
        .await;
    assert_eq!(status, 200, "{body}");
    let history: CoverageHistory = serde_json::from_value(body).unwrap();
    assert_eq!(history.versions[1].changed, ["member_id"]);
    assert_eq!(history.versions[1].reason.expose(), "card re-read");
    assert_eq!(history.versions[2].fields.active, Some(false));
    // Front desk and billing each changed the group once more.
    assert_eq!(history.versions.len(), 5);
    let audit_key = PublicKey::from_hex(&device.audit_public_key).unwrap();
    crate::harness::verify_trail(&server.store, &audit_key, &[])
        .await
        .unwrap();
}

/// Billing's working list: the patients booked on a day with their coverages, as billing
/// may read them, and nothing of the appointments; a cancelled visit leaves it; each patient
/// listed is one recorded disclosure naming the coverage fields sent.
#[tokio::test]
async fn billing_lists_the_days_patients_with_their_coverage_and_no_appointment_detail() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login,
    } = server.signed_in(0xD1, "frontdesk").await;
    let front = login.session_token.expose().to_owned();
    let sessions = every_role(&server, &report, &device).await;
    let billing = &sessions[2].1;
    let (status, day) = server.get("/v1/appointments", &front).await;
    assert_eq!(status, 200, "{day}");
    let date = day["date"].as_str().unwrap().to_owned();
    let appointments = day["appointments"].as_array().unwrap().clone();
    assert!(appointments.len() >= 2, "the seed books a day");
    // Cancel the visit of a patient booked once that day: they leave billing's list.
    let once = |a: &&Value| {
        appointments
            .iter()
            .filter(|b| b["patient_id"] == a["patient_id"])
            .count()
            == 1
    };
    let called_off = appointments.iter().find(once).unwrap().clone();
    let (status, body) = server
        .patch(
            &format!("/v1/appointments/{}", called_off["id"].as_str().unwrap()),
            &front,
            called_off["version"].as_u64().unwrap_or(0),
            json!({ "fields": { "status": "cancelled", "cancellation_reason": "rebooked" } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut expected: Vec<&str> = appointments
        .iter()
        .filter(|a| a["id"] != called_off["id"])
        .map(|a| a["patient_id"].as_str().unwrap())
        .collect();
    expected.sort_unstable();
    expected.dedup();
    let insured = expected[0];
    let (status, body) = server
        .post(
            &format!("/v1/patients/{insured}/coverages"),
            Some(&front),
            json!({ "fields": { "payer": "Synthetic Mutual", "member_id": "M-41" } }),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let before = route_events(&server, "/v1/day/patients").await.len();
    let (status, list) = server
        .get(&format!("/v1/day/patients?date={date}"), billing)
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["date"], date.as_str());
    let patients = list["patients"].as_array().unwrap();
    let mut listed: Vec<&str> = patients
        .iter()
        .map(|p| p["record"]["id"].as_str().unwrap())
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, expected, "each patient booked that day, once");
    for p in patients {
        let fields = p["record"]["fields"].as_object().unwrap();
        assert!(fields.contains_key("name"), "{:?}", fields.keys());
        for name in fields.keys() {
            assert!(
                field_access(Role::Billing, Resource::Patient, name).reads(),
                "billing may not read {name}"
            );
        }
        assert!(!fields.contains_key("emergency_contact"));
        for key in ["start", "reason", "practitioner_id", "starts_at", "status"] {
            assert!(p.get(key).is_none(), "no appointment detail: {key}");
        }
    }
    let theirs = patients
        .iter()
        .find(|p| p["record"]["id"] == insured)
        .unwrap();
    let coverages = theirs["coverages"].as_array().unwrap();
    assert!(
        coverages
            .iter()
            .any(|c| c["fields"]["member_id"] == "M-41" && c["patient_id"] == insured),
        "the coverage just added is listed"
    );
    // One disclosure per patient listed, the insured's naming the coverage fields sent.
    let events = route_events(&server, "/v1/day/patients")
        .await
        .split_off(before);
    assert_eq!(events.len(), expected.len());
    for (patient_id, fields) in &events {
        assert!(expected.contains(&patient_id.as_str()));
        assert!(fields.iter().any(|f| f == "name"));
        if patient_id == insured {
            assert!(
                fields.iter().any(|f| f == "Coverage.member_id"),
                "{fields:?}"
            );
        }
    }

    // Another day has no one; a malformed day is named; the roles without the list are
    // refused.
    let (status, empty) = server
        .get("/v1/day/patients?date=2031-01-02", billing)
        .await;
    assert_eq!(
        (status, empty["patients"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    let (status, body) = server
        .get("/v1/day/patients?date=02/01/2031", billing)
        .await;
    assert_eq!((status, body["field"].as_str()), (400, Some("date")));
    for (role, token) in [&sessions[1], &sessions[3]] {
        let (status, _) = server.get("/v1/day/patients", token).await;
        assert_eq!(status, 403, "{role:?}");
    }
}
