//! `seed --clinics N --patients M --seed S`: the same data for the same seed on every
//! machine and backend, different data for another seed, nothing added by a second run, and
//! data that looks like a clinic's week (ages, coverage, appointment statuses by the time of
//! day) and that `audit verify`'s column checks accept.

use std::collections::BTreeMap;

use clinicdesk_server::admin::seed_scale::{ScaleReport, ScaleSeed, seed_clinics};
use clinicdesk_server::scope::Console;

use crate::harness::TestServer;

async fn seed(server: &TestServer, seed: u64) -> ScaleReport {
    let spec = ScaleSeed {
        clinics: 3,
        patients_per_clinic: 60,
        seed,
    };
    seed_clinics(
        &server.store,
        &Console::operator(),
        &server.clock,
        spec,
        &mut |_, _| {},
    )
    .await
    .unwrap()
}

/// Everything seeded, by value (user ids are made by the store, so appointments name their
/// clinician by username).
async fn dump(server: &TestServer) -> Vec<String> {
    let pool = server.owner_pool().await;
    let mut rows: Vec<String> = sqlx::query_as::<_, (String, String, String, String, String)>(
        "SELECT c.name, c.time_zone, p.mrn, p.id, p.record FROM patients p
         JOIN clinics c ON c.id = p.clinic_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .map(|r| format!("{r:?}"))
    .collect();
    rows.extend(
        sqlx::query_as::<_, (String, String, String)>(
            "SELECT id, patient_id, record FROM coverages",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .map(|r| format!("{r:?}")),
    );
    rows.extend(
        sqlx::query_as::<_, (String, String, i64, String, String, String)>(
            "SELECT a.id, a.patient_id, a.starts_at_ms, a.reason, a.status, u.username
             FROM appointments a JOIN users u ON u.id = a.practitioner_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .map(|r| format!("{r:?}")),
    );
    rows.sort();
    rows
}

#[tokio::test]
async fn the_same_seed_makes_the_same_clinics_and_a_second_run_adds_nothing() {
    let (a, b, other) = (
        TestServer::start().await,
        TestServer::start().await,
        TestServer::start().await,
    );
    // Thursday 20:00 UTC of the seeded week: afternoon in every clinic's zone, so the week
    // has a past and a future.
    for s in [&a, &b, &other] {
        s.clock.advance_ms((3 * 24 + 8) * 3_600_000);
    }
    let first = seed(&a, 7).await;
    assert_eq!(
        (first.clinics_created, first.patients),
        (3, 180),
        "{first:?}"
    );
    seed(&b, 7).await;
    seed(&other, 8).await;
    let (dump_a, dump_b) = (dump(&a).await, dump(&b).await);
    assert!(dump_a.len() > 180 + 100, "{} rows", dump_a.len());
    assert_eq!(dump_a, dump_b, "the same seed, the same data");
    assert_ne!(dump(&other).await, dump_a, "another seed, other data");

    let again = seed(&a, 7).await;
    assert_eq!(
        (
            again.clinics_created,
            again.clinics_existing,
            again.patients
        ),
        (0, 3, 0)
    );
    assert_eq!(dump(&a).await, dump_a, "a second run adds nothing");

    // What a clinic's week looks like.
    let pool = a.owner_pool().await;
    let statuses: BTreeMap<String, i64> =
        sqlx::query_as("SELECT status, count(*) FROM appointments GROUP BY status")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    for status in ["fulfilled", "booked", "cancelled"] {
        assert!(statuses.get(status).is_some_and(|n| *n > 0), "{statuses:?}");
    }
    assert!(
        statuses["fulfilled"] > statuses["cancelled"],
        "{statuses:?}"
    );
    let births: Vec<String> = sqlx::query_scalar("SELECT birth_date FROM patients")
        .fetch_all(&pool)
        .await
        .unwrap();
    let years: Vec<i64> = births.iter().map(|d| d[..4].parse().unwrap()).collect();
    assert!(years.iter().any(|y| *y >= 2009), "children");
    assert!(years.iter().any(|y| *y <= 1956), "patients over seventy");
    let covered: i64 = sqlx::query_scalar("SELECT count(DISTINCT patient_id) FROM coverages")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(covered * 100 >= 180 * 75, "{covered} of 180 covered");
    let staff: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(staff, 3 * 5);

    // The columns searches and the schedule read agree with each record.
    let console = Console::operator();
    let keys = clinicdesk_server::secrets::kek::KeyFileProvider::new(a.key_dir.path());
    assert!(
        clinicdesk_server::clinical::records::check_derived(&a.store, &console, &keys)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        clinicdesk_server::clinical::booking::check_derived(&a.store, &console)
            .await
            .unwrap()
            .is_empty()
    );
}
