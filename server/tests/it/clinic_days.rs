//! A clinic's days are its own: the admin sets its IANA time zone (each change in the
//! trail), and the schedule's "today", a chosen day and each appointment's time are in it,
//! on the day clocks spring forward (23 hours) and the day they fall back (25 hours, one
//! hour twice) as on any other.

use clinicdesk_protocol::wire::{AppointmentList, ClinicSettings};
use clinicdesk_server::scope::{ClinicScope, Console};
use clinicdesk_server::time::Clock;
use serde_json::json;
use uuid::Uuid;

use crate::harness::{SignedIn, TestServer, password_of};

fn ms(rfc3339: &str) -> i64 {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap();
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap()
}

async fn day(server: &TestServer, token: &str, query: &str) -> AppointmentList {
    let (status, body) = server.get(&format!("/v1/appointments{query}"), token).await;
    assert_eq!(status, 200, "{query}: {body}");
    serde_json::from_value(body).unwrap()
}

fn times(list: &AppointmentList) -> Vec<&str> {
    list.appointments
        .iter()
        .map(|a| a.starts_at.as_str())
        .collect()
}

#[tokio::test]
async fn the_schedule_is_the_clinics_own_day_across_both_clock_changes() {
    let server = TestServer::start().await;
    // Late evening of the fall-back day in New York, already the next day in UTC.
    let now = ms("2026-11-02T03:30:00Z");
    server.clock.advance_ms(now - server.clock.now_ms());
    let SignedIn {
        report,
        device,
        login: admin,
    } = server.signed_in(0xA, "admin").await;
    let admin = admin.session_token.expose();
    let clinician = device
        .login(&server, "clinician", password_of(&report, "clinician"))
        .await;
    let clinician = clinician.session_token.expose();

    // Only the admin moves the clinic, and only to a zone that exists.
    for (token, tz, want) in [
        (clinician, "America/New_York", 403),
        (admin, "Eastern Time", 400),
        (admin, "America/New_York", 200),
    ] {
        let (status, body) = server
            .post(
                "/v1/clinic/time-zone",
                Some(token),
                json!({ "time_zone": tz }),
            )
            .await;
        assert_eq!(status, want, "{tz}: {body}");
    }
    let (status, body) = server.get("/v1/clinic", clinician).await;
    assert_eq!(status, 200);
    let settings: ClinicSettings = serde_json::from_value(body).unwrap();
    assert_eq!(
        (settings.time_zone.as_str(), settings.today.as_str()),
        ("America/New_York", "2026-11-01")
    );
    let changes: Vec<_> = server
        .events_of("update")
        .await
        .into_iter()
        .filter(|e| e.resource_type == "Clinic")
        .collect();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].fields, ["time_zone"]);

    // Appointments around both changes, stored as instants.
    let scope = ClinicScope::of_console(&Console::operator(), report.clinic_id);
    let patient: String = sqlx::query_scalar("SELECT min(id) FROM patients WHERE clinic_id = $1")
        .bind(report.clinic_id.to_string())
        .fetch_one(&server.owner_pool().await)
        .await
        .unwrap();
    let patient: Uuid = patient.parse().unwrap();
    for at in [
        "2026-03-08T04:30:00Z", // 23:30 EST, the day before
        "2026-03-08T05:30:00Z", // 00:30 EST
        "2026-03-08T07:30:00Z", // 03:30 EDT, an hour after 01:30 EST
        "2026-03-09T03:30:00Z", // 23:30 EDT
        "2026-03-09T04:30:00Z", // 00:30 EDT, the day after
        "2026-11-01T05:30:00Z", // 01:30 EDT
        "2026-11-01T06:30:00Z", // 01:30 EST, the same hour again
        "2026-11-02T03:30:00Z", // 22:30 EST: "now"
        "2026-11-02T05:30:00Z", // 00:30 EST, the day after
    ] {
        server
            .store
            .insert_appointment(&scope, patient, None, ms(at), "Synthetic visit")
            .await
            .unwrap();
    }
    let spring = day(&server, clinician, "?date=2026-03-08").await;
    assert_eq!(spring.time_zone, "America/New_York");
    assert_eq!(
        times(&spring),
        [
            "2026-03-08T00:30:00-05:00",
            "2026-03-08T03:30:00-04:00",
            "2026-03-08T23:30:00-04:00"
        ]
    );
    let fall = day(&server, clinician, "?date=2026-11-01").await;
    assert_eq!(
        times(&fall),
        [
            "2026-11-01T01:30:00-04:00",
            "2026-11-01T01:30:00-05:00",
            "2026-11-01T22:30:00-05:00"
        ]
    );
    // Without a date: today in the clinic, not in UTC.
    let today = day(&server, clinician, "").await;
    assert_eq!(today.date, "2026-11-01");
    assert_eq!(times(&today), times(&fall));
    for bad in ["?date=2026-02-30", "?date=11/01/2026"] {
        let (status, body) = server
            .get(&format!("/v1/appointments{bad}"), clinician)
            .await;
        assert_eq!(
            (status, body["field"].as_str()),
            (400, Some("date")),
            "{bad}"
        );
    }
}
