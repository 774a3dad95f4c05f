//! The offline copy's patients, a page at a time (`/v1/sync/patients`), through the real
//! server: every patient of the window once, by id, across pages; each cut to the reader's
//! field policy and care team (a break-glass grant does not reach a copy); a clinician's own
//! appointments only; one disclosure per patient; the roles without the schedule refused.

use std::collections::BTreeSet;

use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::policy::fields::{Resource, field_access};
use clinicdesk_protocol::wire::SyncPage;
use clinicdesk_server::scope::{ClinicScope, Console};
use clinicdesk_server::time::Clock;
use serde_json::json;
use uuid::Uuid;

use crate::harness::{SignedIn, TestServer, every_role, route_events};

/// Every page of the window for `token`, `limit` at a time.
async fn all_pages(server: &TestServer, token: &str, limit: usize) -> Vec<SyncPage> {
    let mut pages = Vec::new();
    let mut after = String::new();
    loop {
        let (status, body) = server
            .get(&format!("/v1/sync/patients?limit={limit}{after}"), token)
            .await;
        assert_eq!(status, 200, "{body}");
        let page: SyncPage = serde_json::from_value(body).unwrap();
        let next = page.next;
        pages.push(page);
        match next {
            Some(id) => after = format!("&after={id}"),
            None => return pages,
        }
    }
}

/// The server's events of this route: (patient id, field names), in order.
async fn sync_events(server: &TestServer) -> Vec<(Uuid, Vec<String>)> {
    route_events(server, "/v1/sync/patients")
        .await
        .into_iter()
        .map(|(id, fields)| (id.parse().unwrap(), fields))
        .collect()
}

#[tokio::test]
async fn the_window_comes_a_page_at_a_time_each_patient_once_as_the_reader_may_see_them() {
    let server = TestServer::start().await;
    let SignedIn {
        report,
        device,
        login,
    } = server.signed_in(0xA, "frontdesk").await;
    let front = login.session_token.expose().to_owned();
    let sessions = every_role(&server, &report, &device).await;
    let token_of = |role: Role| sessions.iter().find(|(r, _)| *r == role).unwrap().1.clone();
    let clinician = token_of(Role::Clinician);

    // A walk-in booked today with no practitioner: on the front desk's copy, not on the
    // clinician's (whose copy holds their own appointments).
    let (status, body) = server
        .post(
            "/v1/patients",
            Some(&front),
            json!({ "fields": { "name": { "given": "Wren", "family": "Synthetic" },
                                "birth_date": "1990-02-03" } }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let walk_in: Uuid = body["id"].as_str().unwrap().parse().unwrap();
    let scope = ClinicScope::of_console(&Console::operator(), report.clinic_id);
    server
        .store
        .insert_appointment(&scope, walk_in, None, server.clock.now_ms(), "Walk-in")
        .await
        .unwrap();

    let (status, day) = server.get("/v1/appointments", &front).await;
    assert_eq!(status, 200, "{day}");
    let booked: BTreeSet<Uuid> = day["appointments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["patient_id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(booked.len() >= 4 && booked.contains(&walk_in));

    // The front desk's copy: each booked patient once, by id, two to a page.
    let before = sync_events(&server).await.len();
    let pages = all_pages(&server, &front, 2).await;
    assert_eq!(pages.len(), booked.len().div_ceil(2));
    let ids: Vec<Uuid> = pages
        .iter()
        .flat_map(|p| p.patients.iter().map(|s| s.chart.id))
        .collect();
    assert_eq!(ids, booked.iter().copied().collect::<Vec<_>>());
    for p in pages.iter().flat_map(|p| &p.patients) {
        assert!(
            p.chart.clinical.is_none(),
            "the front desk reads no clinical content"
        );
        let record = p
            .record
            .as_ref()
            .expect("the front desk reads registration");
        assert!(record.fields.name.is_some());
        for name in record.fields.present() {
            assert!(field_access(Role::FrontDesk, Resource::Patient, name).reads());
        }
        let coverages = p.coverages.as_ref().expect("the front desk reads coverage");
        assert_eq!(coverages.len(), usize::from(p.chart.id != walk_in));
    }
    // One disclosure per patient, naming what was sent.
    let events = sync_events(&server).await.split_off(before);
    assert_eq!(
        events.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        ids,
        "one event per patient, in the order sent"
    );
    for (id, fields) in &events {
        assert!(fields.iter().any(|f| f == "name") && fields.iter().any(|f| f == "mrn"));
        assert_eq!(
            fields.iter().any(|f| f == "Coverage.payer"),
            *id != walk_in,
            "{fields:?}"
        );
        assert!(!fields.iter().any(|f| f == "allergies"));
    }

    // The clinician's copy: their own appointments; the clinical summary for their care
    // team's patients only, and a break-glass grant does not change that.
    let theirs: Vec<_> = all_pages(&server, &clinician, 200)
        .await
        .into_iter()
        .flat_map(|p| p.patients)
        .collect();
    assert!(!theirs.iter().any(|p| p.chart.id == walk_in));
    assert_eq!(theirs.len(), booked.len() - 1);
    assert!(theirs.iter().any(|p| p.chart.clinical.is_some()));
    let without: Vec<Uuid> = theirs
        .iter()
        .filter(|p| p.chart.clinical.is_none())
        .map(|p| p.chart.id)
        .collect();
    assert_eq!(
        without.len(),
        1,
        "the seed keeps one patient off the care team"
    );
    let reads_coverage = field_access(Role::Clinician, Resource::Coverage, "payer").reads();
    assert!(
        theirs
            .iter()
            .all(|p| p.coverages.is_some() == reads_coverage)
    );
    let (status, body) = server
        .post(
            &format!("/v1/patients/{}/break-glass", without[0]),
            Some(&clinician),
            json!({ "reason_code": "emergency", "reason_text": "Collapsed in the waiting room" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, chart) = server
        .get(&format!("/v1/patients/{}", without[0]), &clinician)
        .await;
    assert_eq!(status, 200);
    assert!(
        chart.get("clinical").is_some(),
        "the grant opens the chart online"
    );
    let again = all_pages(&server, &clinician, 200).await;
    let copied = again
        .iter()
        .flat_map(|p| &p.patients)
        .find(|p| p.chart.id == without[0])
        .unwrap();
    assert!(copied.chart.clinical.is_none(), "no grant reaches a copy");
    assert_eq!(
        serde_json::to_value(copied.chart.clinical_access).unwrap(),
        "outside_care_team"
    );

    // Malformed windows and limits are named; roles without the schedule are refused.
    for (query, field) in [
        ("from=07/12/2026", "from"),
        ("from=2026-12-08&to=2026-12-07", "to"),
        ("from=2026-12-01&to=2027-01-01", "to"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
    ] {
        let (status, body) = server
            .get(&format!("/v1/sync/patients?{query}"), &front)
            .await;
        assert_eq!(
            (status, body["field"].as_str()),
            (400, Some(field)),
            "{query}"
        );
    }
    for role in [Role::Billing, Role::Admin] {
        let (status, _) = server.get("/v1/sync/patients", &token_of(role)).await;
        assert_eq!(status, 403, "{role:?}");
    }
}
