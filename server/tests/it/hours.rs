//! Practitioners' working hours through the real server: the front desk sets a week (each
//! change in the trail), and the free slots of a day are the quarter hours where a booking
//! fits within it, around the appointments that hold the practitioner's time, in the
//! clinic's time zone on the day clocks spring forward and the day they fall back.

use serde_json::json;
use uuid::Uuid;

use crate::harness::{SignedIn, TestServer, password_of};

async fn slots(server: &TestServer, token: &str, doctor: Uuid, query: &str) -> Vec<String> {
    let (status, body) = server
        .get(
            &format!("/v1/practitioners/{doctor}/free-slots?{query}"),
            token,
        )
        .await;
    assert_eq!(status, 200, "{query}: {body}");
    serde_json::from_value(body["slots"].clone()).unwrap()
}

#[tokio::test]
async fn working_hours_give_free_slots_in_the_clinics_time_across_both_clock_changes() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login: admin,
    } = server.signed_in(0xB, "admin").await;
    let (status, _) = server
        .post(
            "/v1/clinic/time-zone",
            Some(admin.session_token.expose()),
            json!({ "time_zone": "America/New_York" }),
        )
        .await;
    assert_eq!(status, 200);
    let front = device
        .login(&server, "frontdesk", password_of(&report, "frontdesk"))
        .await;
    let clinician = device
        .login(&server, "clinician", password_of(&report, "clinician"))
        .await;
    let (front, doctor) = (front.session_token.expose(), clinician.user.user_id);
    let hours_path = format!("/v1/practitioners/{doctor}/working-hours");

    // Nobody set them yet: Monday to Friday, nine to five.
    let (status, body) = server.get(&hours_path, front).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["default"], true);
    assert_eq!(body["periods"].as_array().unwrap().len(), 5);

    // A night clinic on Sundays (across the hour the clocks change) and Monday mornings.
    let week = json!({ "periods": [
        { "weekday": "sun", "start": "00:00", "end": "04:00" },
        { "weekday": "mon", "start": "09:00", "end": "12:00" },
    ]});
    let (status, _) = server
        .put(&hours_path, clinician.session_token.expose(), week.clone())
        .await;
    assert_eq!(status, 403, "the schedule is the front desk's");
    let overlapping = json!({ "periods": [
        { "weekday": "mon", "start": "09:00", "end": "12:00" },
        { "weekday": "mon", "start": "11:00", "end": "13:00" },
    ]});
    let (status, body) = server.put(&hours_path, front, overlapping).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("periods")));
    let (status, body) = server.put(&hours_path, front, week.clone()).await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = server.get(&hours_path, front).await;
    assert_eq!(
        (&body["default"], &body["periods"]),
        (&json!(false), &week["periods"])
    );
    let changed = server.events_of("update").await;
    assert!(changed.iter().any(|e| e.resource_type == "Practitioner"
        && e.resource_id == doctor.to_string()
        && e.fields == ["working_hours"]));

    // Spring forward (2027-03-14, 02:00 EST becomes 03:00 EDT): four hours on the wall
    // clock are three, and no slot starts at a time that does not exist.
    let spring = slots(&server, front, doctor, "date=2027-03-14&duration_mins=60").await;
    assert_eq!(spring.len(), 9, "{spring:?}");
    assert_eq!(spring[0], "2027-03-14T00:00:00-05:00");
    assert_eq!(spring[7], "2027-03-14T01:45:00-05:00");
    assert_eq!(spring[8], "2027-03-14T03:00:00-04:00");
    assert!(!spring.iter().any(|s| s.contains("T02:")));
    // Fall back (2027-11-07, 02:00 EDT becomes 01:00 EST): five hours, 01:00 twice.
    let fall = slots(&server, front, doctor, "date=2027-11-07&duration_mins=60").await;
    assert_eq!(fall.len(), 17, "{fall:?}");
    assert!(fall.contains(&"2027-11-07T01:00:00-04:00".to_owned()));
    assert!(fall.contains(&"2027-11-07T01:00:00-05:00".to_owned()));
    assert_eq!(fall.last().unwrap(), "2027-11-07T03:00:00-05:00");
    // An ordinary Sunday: four hours.
    let plain = slots(&server, front, doctor, "date=2027-03-21&duration_mins=60").await;
    assert_eq!(plain.len(), 13);

    // Monday morning, half hours: a booking at ten takes the slots that would overlap it.
    let before = slots(&server, front, doctor, "date=2027-03-15").await;
    assert_eq!(before.len(), 11, "09:00 to 11:30: {before:?}");
    let patient: String =
        sqlx::query_scalar("SELECT id FROM patients WHERE clinic_id = $1 LIMIT 1")
            .bind(report.clinic_id.to_string())
            .fetch_one(&server.owner_pool().await)
            .await
            .unwrap();
    let (status, body) = server
        .post(
            "/v1/appointments",
            Some(front),
            json!({ "fields": { "patient_id": patient, "practitioner_id": doctor,
                    "start": "2027-03-15T10:00:00-04:00", "duration_mins": 30,
                    "appointment_type": "followup", "reason": "Synthetic check" } }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let after = slots(&server, front, doctor, "date=2027-03-15").await;
    let taken: Vec<&String> = before.iter().filter(|s| !after.contains(s)).collect();
    assert_eq!(
        taken,
        [
            "2027-03-15T09:45:00-04:00",
            "2027-03-15T10:00:00-04:00",
            "2027-03-15T10:15:00-04:00"
        ]
    );
    // A day off; a day already past; refusals by field; someone who is not a practitioner.
    assert!(
        slots(&server, front, doctor, "date=2027-03-16")
            .await
            .is_empty()
    );
    assert!(
        slots(&server, front, doctor, "date=2026-03-16")
            .await
            .is_empty()
    );
    let (status, body) = server
        .get(
            &format!("/v1/practitioners/{doctor}/free-slots?duration_mins=2"),
            front,
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("duration_mins"))
    );
    let (status, _) = server
        .get(
            &format!("/v1/practitioners/{}/free-slots", admin.user.user_id),
            front,
        )
        .await;
    assert_eq!(status, 404);
}

/// A clinician reads their own working hours (the front desk sets them; the clinician
/// should see the week they will be booked in), and no other practitioner's: another's
/// answers like one that does not exist. Before, the route needed ManageSchedule, so a
/// clinician's read of their own week was refused (`403`).
#[tokio::test]
async fn a_clinician_reads_their_own_working_hours_and_only_theirs() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login: clinician,
    } = server.signed_in(0x40, "clinician").await;
    let own = clinician.user.user_id;
    let admin = device
        .login(&server, "admin", password_of(&report, "admin"))
        .await;
    let (status, body) = server
        .post(
            "/v1/users",
            Some(admin.session_token.expose()),
            json!({
                "username": "second.doctor",
                "display_name": "Dr. Second (synthetic)",
                "role": "clinician",
                "password": "Lantern-Quillfeather-Orbit-4821",
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let colleague: Uuid = body["user_id"].as_str().unwrap().parse().unwrap();
    let desk = device
        .login(&server, "frontdesk", password_of(&report, "frontdesk"))
        .await;
    let week = json!({ "periods": [{ "weekday": "tue", "start": "08:00", "end": "12:30" }] });
    let (status, body) = server
        .put(
            &format!("/v1/practitioners/{own}/working-hours"),
            desk.session_token.expose(),
            week,
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let hours_of = |token: String, id: Uuid| {
        let server = &server;
        async move {
            server
                .get(&format!("/v1/practitioners/{id}/working-hours"), &token)
                .await
        }
    };
    let clinician_token = clinician.session_token.expose().to_owned();
    let (status, body) = hours_of(clinician_token.clone(), own).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["periods"][0]["start"], "08:00");
    assert_eq!(body["default"], false);
    let (status, body) = hours_of(clinician_token.clone(), colleague).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    // The front desk reads every practitioner's; billing none; a clinician writes none.
    let (status, _) = hours_of(desk.session_token.expose().to_owned(), colleague).await;
    assert_eq!(status, 200);
    let billing = server
        .post(
            "/v1/users",
            Some(admin.session_token.expose()),
            json!({
                "username": "jo.billing",
                "display_name": "Jo Billing (synthetic)",
                "role": "billing",
                "password": "Harbor-Mosaic-Tundra-Velvet-77",
            }),
        )
        .await;
    assert_eq!(billing.0, 201);
    let billing = device
        .first_login(
            &server,
            "jo.billing",
            "Harbor-Mosaic-Tundra-Velvet-77",
            "Quiet-Meadow-Lantern-Frost-58",
        )
        .await;
    let (status, _) = hours_of(billing.session_token.expose().to_owned(), own).await;
    assert_eq!(status, 403);
    let (status, _) = server
        .put(
            &format!("/v1/practitioners/{own}/working-hours"),
            &clinician_token,
            json!({ "periods": [] }),
        )
        .await;
    assert_eq!(status, 403);
}
