//! Tests that mean something only on PostgreSQL. `cargo xtask test` skips this module on
//! its SQLite leg (`--skip postgres_only::`) and runs it on the PostgreSQL leg; run by hand
//! without `CLINICDESK_TEST_POSTGRES_URL`, each test fails and says why, rather than pass
//! having tested nothing.

use clinicdesk_server::scope::{ClinicScope, Console};
use clinicdesk_server::store::{Backend, NewPatient, Store};
use uuid::Uuid;

use crate::harness::fresh_postgres_database;

fn patient(name: &str) -> NewPatient {
    NewPatient {
        id: Uuid::now_v7(),
        name: name.into(),
        birth_date: "1970-01-01".into(),
        mrn: format!("MRN-{name}"),
        phone: "555-0100".into(),
        allergies: vec![],
        problems: vec![],
        medications: vec![],
        record: "{}".into(),
        given: String::new(),
        family: name.into(),
    }
}

/// The second wall: on PostgreSQL a query that forgets its clinic filter still sees only
/// the clinic its scope named, and cannot write another clinic's row. (SQLite has no
/// row-level security; there the scoped store functions' own filters are the only wall,
/// which the authorization matrix and the 200-clinic isolation test cover.)
#[tokio::test]
async fn row_level_security_confines_an_unfiltered_query_to_the_scopes_clinic() {
    let Some(database) = fresh_postgres_database().await else {
        panic!(
            "this test needs PostgreSQL: CLINICDESK_TEST_POSTGRES_URL is unset \
             (`cargo xtask test` runs it on its PostgreSQL leg)"
        );
    };
    // The server's own login, a member of clinicdesk_app, as in production.
    let store = Store::open(&database.location()).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    let console = Console::operator();
    let (a, b) = (Uuid::from_u128(0xA), Uuid::from_u128(0xB));
    for clinic in [a, b] {
        store
            .create_clinic(clinic, "Clinic", 900, "UTC", 0)
            .await
            .unwrap();
        let scope = ClinicScope::of_console(&console, clinic);
        for i in 0..3 {
            store
                .insert_patient(&scope, &patient(&format!("Synthetic {i}")))
                .await
                .unwrap();
        }
    }

    let mut tx = store
        .clinic_tx(&ClinicScope::of_console(&console, a))
        .await
        .unwrap();
    let seen: Vec<String> = sqlx::query_scalar("SELECT clinic_id FROM patients")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seen, vec![a.to_string(); 3], "only clinic A's rows");
    let changed = sqlx::query("UPDATE patients SET phone = 'x' WHERE clinic_id = $1")
        .bind(b.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(
        changed.rows_affected(),
        0,
        "B's rows are not there to change"
    );
    let smuggled = sqlx::query(
        "INSERT INTO patients (id, clinic_id, name, birth_date, phone, allergies, problems, medications)
         VALUES ($1, $2, 'x', 'x', 'x', '[]', '[]', '[]')",
    )
    .bind(Uuid::now_v7().to_string())
    .bind(b.to_string())
    .execute(&mut *tx)
    .await;
    assert!(
        smuggled
            .unwrap_err()
            .to_string()
            .contains("row-level security"),
        "a row for another clinic is refused"
    );
    drop(tx);

    // Outside any scope the role sees no clinical row at all.
    let mut unscoped = store.tx().await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM patients")
        .fetch_one(&mut *unscoped)
        .await
        .unwrap();
    assert_eq!(count, 0);
    drop(unscoped);
    // While the database owner sees all six: the rows are there, the wall hides them.
    let mut owner = <sqlx::PgConnection as sqlx::Connection>::connect(&database.owner)
        .await
        .unwrap();
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM patients")
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert_eq!(all, 6);
}
