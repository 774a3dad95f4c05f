//! Tests that mean something only on PostgreSQL. `cargo xtask test` skips this module on
//! its SQLite leg (`--skip postgres_only::`) and runs it on the PostgreSQL leg; run by hand
//! without `CLINICDESK_TEST_POSTGRES_URL`, each test fails and says why, rather than pass
//! having tested nothing.

use clinicdesk_server::scope::{ClinicScope, Console};
use clinicdesk_server::store::{Backend, NewPatient, Store, StoreLocation};
use uuid::Uuid;

use crate::harness::{SERVER_LOGIN, fresh_postgres_database};

/// A fresh database of the PostgreSQL leg; run without one, the test fails and says why.
async fn postgres() -> crate::harness::PostgresUrls {
    let Some(database) = fresh_postgres_database().await else {
        panic!(
            "this test needs PostgreSQL: CLINICDESK_TEST_POSTGRES_URL is unset \
             (`cargo xtask test` runs it on its PostgreSQL leg)"
        );
    };
    database
}

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
    let database = postgres().await;
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

/// The server reaches PostgreSQL over TLS when its URL asks for `verify-full` (each of its
/// connections is TLS, as the database itself reports), checks the database's certificate
/// against the root it was given (another CA's root is refused), and refuses a database off
/// loopback whose URL asks for less before connecting at all. This test reaches the
/// throwaway cluster on 127.0.0.1 only (tests stay on loopback), so the rule that adds
/// `verify-full` to a URL naming a host elsewhere is checked on the URLs themselves
/// (`store::postgres_tls`'s unit test), not against a remote server.
#[tokio::test]
async fn the_server_speaks_verified_tls_to_postgres_and_refuses_less_off_loopback() {
    use sqlx::Connection;
    let (Some(database), Ok(ca)) = (
        fresh_postgres_database().await,
        std::env::var("CLINICDESK_TEST_POSTGRES_CA"),
    ) else {
        panic!(
            "this test needs PostgreSQL with TLS: CLINICDESK_TEST_POSTGRES_URL and \
             CLINICDESK_TEST_POSTGRES_CA (`cargo xtask test` sets both on its PostgreSQL leg)"
        );
    };
    let with_root = |url: &str, root: &str| {
        assert!(
            url.contains("sslmode=disable"),
            "the leg's URLs ask for no TLS"
        );
        url.replace(
            "sslmode=disable",
            &format!("sslmode=verify-full&sslrootcert={root}"),
        )
    };
    let store = Store::open(&StoreLocation::Postgres {
        url: with_root(&database.server, &ca),
        migration_url: Some(with_root(&database.owner, &ca)),
    })
    .await
    .unwrap();
    store
        .create_clinic(Uuid::now_v7(), "Clinic", 900, "UTC", 0)
        .await
        .unwrap();
    let mut owner = sqlx::PgConnection::connect(&database.owner).await.unwrap();
    let (over_tls, all): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_activity a
         JOIN pg_stat_ssl s USING (pid)
         WHERE a.datname = current_database() AND a.usename = $1",
    )
    .bind(SERVER_LOGIN)
    .fetch_one(&mut owner)
    .await
    .unwrap();
    assert!(all > 0, "the server has connections open");
    assert_eq!(over_tls, all, "every one of them over TLS");
    drop(store);

    // A root the database's certificate does not chain to: no connection.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-ca.pem");
    let stranger = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(&other, stranger.cert.pem()).unwrap();
    let other = other.to_str().unwrap();
    assert!(
        Store::open(&StoreLocation::Postgres {
            url: with_root(&database.server, other),
            migration_url: Some(with_root(&database.owner, other)),
        })
        .await
        .is_err(),
        "a certificate from another root is refused"
    );

    // Off loopback and asking for less than verify-full: refused, naming what to give.
    // (`.invalid` never resolves: nothing is looked up or contacted.)
    let err = Store::open(&StoreLocation::postgres_as_owner(
        "postgres://clinicdesk@db.clinicdesk.invalid/clinicdesk?sslmode=require",
    ))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("verify-full"), "{err}");
    owner.close().await.unwrap();
}

/// The clinic tables that are not behind row-level security yet, each with its reason. A
/// table with a `clinic_id` that is neither covered nor named here fails
/// `every_clinic_table_is_behind_row_level_security_or_named_with_its_reason`, so a new
/// clinic table cannot arrive without a policy unnoticed; and a name here whose table has a
/// policy fails it too, so the list only shrinks.
const NOT_BEHIND_THE_WALL: &[(&str, &str)] = &[
    // Read to learn who is calling, before any clinic is known.
    (
        "users",
        "sign-in finds the account by its device's clinic and username",
    ),
    (
        "devices",
        "an upload and a sign-in find their workstation by id",
    ),
    ("sessions", "every request finds its session by token hash"),
    (
        "mfa_tickets",
        "the second-factor step finds its ticket by hash",
    ),
    ("mfa_grants", "a sign-in within a grant finds it by hash"),
    ("enrollment_codes", "an enrollment finds its code by hash"),
    (
        "provisionings",
        "the operator's record of provisioning a clinic",
    ),
];

/// Every table that holds a clinic's rows (it has a `clinic_id`) is behind row-level
/// security with a policy, or named in [`NOT_BEHIND_THE_WALL`] with its reason (issue 22,
/// "the second wall"). Before, the device escrow (the workstations' sealed secrets and
/// recovery keys) and the second factors (TOTP secrets, security keys, recovery codes) had
/// no policy, and nothing would have noticed the next table without one.
#[tokio::test]
async fn every_clinic_table_is_behind_row_level_security_or_named_with_its_reason() {
    use sqlx::Connection;
    let database = postgres().await;
    let store = Store::open(&database.location()).await.unwrap();
    let mut owner = sqlx::PgConnection::connect(&database.owner).await.unwrap();
    let tables: Vec<(String, bool, i64)> = sqlx::query_as(
        "SELECT c.relname::text, c.relrowsecurity,
                (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid)
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() AND c.relkind = 'r'
           AND EXISTS (SELECT 1 FROM pg_attribute a
                       WHERE a.attrelid = c.oid AND a.attname = 'clinic_id' AND NOT a.attisdropped)
         ORDER BY 1",
    )
    .fetch_all(&mut owner)
    .await
    .unwrap();
    assert!(
        tables.len() > 10,
        "the clinic tables were found: {tables:?}"
    );
    let named = |t: &str| NOT_BEHIND_THE_WALL.iter().any(|(n, _)| *n == t);
    let uncovered: Vec<&str> = tables
        .iter()
        .filter(|(t, rls, policies)| !(named(t) || *rls && *policies > 0))
        .map(|(t, _, _)| t.as_str())
        .collect();
    assert!(
        uncovered.is_empty(),
        "clinic tables without a row-level security policy: {uncovered:?}"
    );
    let stale: Vec<&str> = NOT_BEHIND_THE_WALL
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| {
            !tables
                .iter()
                .any(|(name, rls, policies)| name == t && !(*rls && *policies > 0))
        })
        .collect();
    assert!(
        stale.is_empty(),
        "named as outside the wall but covered (or gone): {stale:?}"
    );
    owner.close().await.unwrap();
    store.close().await;
}

/// The audit trail is behind the wall like the charts it records (issue 22, "the second
/// wall"): its rows name patients, users and break-glass reasons. In a transaction of
/// clinic A the server's role sees only A's events, alerts, upload progress, log nodes and
/// checkpoints; outside any clinic it sees none of them. And everything that reads the
/// trail still finds all of it: the upload receipts' proofs (checked in `upload`), the
/// workstation list's upload progress, the checkpoint publisher and `audit verify`, which
/// walk the clinics one by one. Before, the five tables had no policy: the unscoped count
/// saw both clinics' rows.
#[tokio::test]
async fn the_audit_trail_is_behind_the_wall_and_still_read_in_full() {
    use crate::audit_log::{chain, event, sign, upload};
    use clinicdesk_server::audit::key::AuditKey;
    use clinicdesk_server::audit::verify::verify_all;
    use clinicdesk_server::time::Clock;
    use sqlx::Row;

    let server = crate::harness::TestServer::start().await;
    assert!(server.database.is_some(), "the PostgreSQL leg");
    let console = Console::operator();
    let a = server.signed_in(0xA, "clinician").await;
    let b = server.signed_in(0xB, "clinician").await;
    let clinic_a = Uuid::from_u128(0xA);

    // Twenty events each (enough for stored log nodes), with a gap in A's chain at 19.
    let events_a = chain(&a.device, a.login.user.user_id, 20);
    let first_a: Vec<_> = events_a[..18].iter().collect();
    upload(&server, &a.device, &first_a).await;
    upload(&server, &a.device, &[&events_a[19]]).await;
    let events_b = chain(&b.device, b.login.user.user_id, 20);
    upload(&server, &b.device, &events_b.iter().collect::<Vec<_>>()).await;
    // A different event at A's stored sequence 2: a fork, kept as A's tamper alert.
    let fork = sign(
        &a.device,
        event(&a.device, a.login.user.user_id, 2, events_a[0].event.hash()),
    );
    upload(&server, &a.device, &[&fork]).await;

    let tables = [
        "audit_events",
        "audit_alerts",
        "audit_device_heads",
        "audit_nodes",
        "audit_checkpoints",
    ];
    let role = server.app_role_pool().await;
    let owner = server.owner_pool().await;
    for table in tables {
        let mut tx = role.begin().await.unwrap();
        sqlx::query("SELECT set_config('clinicdesk.clinic_id', $1, true)")
            .bind(clinic_a.to_string())
            .execute(&mut *tx)
            .await
            .unwrap();
        let seen: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT DISTINCT clinic_id FROM {table}"
        )))
        .fetch_all(&mut *tx)
        .await
        .unwrap();
        assert_eq!(seen, vec![clinic_a.to_string()], "{table}: A's rows only");
        drop(tx);
        let unscoped: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&role)
                .await
                .unwrap();
        assert_eq!(unscoped, 0, "{table}: nothing outside a clinic");
        let clinics: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(DISTINCT clinic_id) FROM {table}"
        )))
        .fetch_one(&owner)
        .await
        .unwrap();
        let expected = if table == "audit_alerts" { 1 } else { 2 };
        assert_eq!(
            clinics, expected,
            "{table}: the rows are there, the wall hides them"
        );
    }

    // The workstation list counts A's upload progress through the wall.
    let listed = server
        .store
        .workstations(&ClinicScope::of_console(&console, clinic_a))
        .await
        .unwrap();
    let progress: Vec<(i64, i64, i64)> = listed
        .iter()
        .map(|w| (w.contiguous_seq, w.max_seq, w.stored_above_contiguous))
        .collect();
    assert_eq!(progress, vec![(18, 20, 1)]);

    // A server event grows B's log past its last checkpoint: the publisher finds it.
    let key = AuditKey::load_or_create(server.dir.path()).unwrap();
    b.device
        .login(
            &server,
            "frontdesk",
            crate::harness::password_of(&b.report, "frontdesk"),
        )
        .await;
    let signed =
        clinicdesk_server::audit::log::checkpoint_grown(&server.store, &key, server.clock.now_ms())
            .await
            .unwrap();
    assert_eq!(signed, 1, "B's log grew by the sign-in");

    // `audit verify` walks both clinics and every event, and finds A's alert.
    let report = verify_all(&console, &server.store, key.server_keys(), &[])
        .await
        .unwrap();
    let stored: i64 = sqlx::query("SELECT count(*) FROM audit_events")
        .fetch_one(&owner)
        .await
        .unwrap()
        .get(0);
    assert_eq!(report.clinics, 2);
    assert_eq!(report.events, u64::try_from(stored).unwrap());
    assert_eq!(report.alerts, 1);
}

/// Every connection the test server holds to its database `database` is cut (as a
/// failover or a restart of PostgreSQL cuts them), by the superuser. Only this database's:
/// every test server logs in as the same role, and the other tests run beside this one.
async fn cut_server_connections(database: &str) -> u64 {
    use sqlx::Connection;
    let admin = std::env::var("CLINICDESK_TEST_POSTGRES_URL").unwrap();
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE usename = $1 AND datname = $2",
    )
    .bind(SERVER_LOGIN)
    .bind(database)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    cut.into_iter().filter(|c| *c).count() as u64
}

/// The database connection drops mid-request, again and again, while a workstation uploads
/// its trail and a clinician reads a chart: a request caught by it fails cleanly (a 5xx with
/// a code, nothing of the request in it), the next ones succeed on new connections, and
/// the workstation, re-sending what got no receipt as the app does, ends with every event
/// stored exactly once, and the trail verifies.
#[tokio::test]
async fn dropped_database_connections_fail_requests_cleanly_and_lose_no_event() {
    use crate::audit_log::chain;
    use clinicdesk_protocol::wire::AuditReceipt;
    use serde_json::json;

    let server = crate::harness::TestServer::start().await;
    assert!(server.database.is_some(), "the PostgreSQL leg");
    let s = server.signed_in(0xD0, "clinician").await;
    let token = s.login.session_token.expose().to_owned();
    let patient: String =
        sqlx::query_scalar("SELECT id FROM patients WHERE clinic_id = $1 LIMIT 1")
            .bind(Uuid::from_u128(0xD0).to_string())
            .fetch_one(&server.owner_pool().await)
            .await
            .unwrap();
    let events = chain(&s.device, s.login.user.user_id, 60);
    let database: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&server.owner_pool().await)
        .await
        .unwrap();

    let (mut acked, mut failed, mut cuts) = (0u64, 0u64, 0u64);
    let (mut answered, mut refused) = (0u64, 0u64);
    for round in 0..40 {
        if acked == 60 {
            break;
        }
        // What the app sends: everything after its last receipt, five at a time.
        let from = usize::try_from(acked).unwrap();
        let batch: Vec<_> = events[from..(from + 5).min(60)].iter().collect();
        let upload = server.post(
            "/v1/audit/batches",
            None,
            json!({ "device_id": s.device.id, "events": batch }),
        );
        let chart = format!("/v1/patients/{patient}");
        let read = server.get(&chart, &token);
        let cut = async {
            if round % 2 == 0 {
                cut_server_connections(&database).await
            } else {
                0
            }
        };
        let ((status, body), (read_status, read_body), n) = tokio::join!(upload, read, cut);
        cuts += n;
        if read_status == 200 {
            answered += 1;
        } else {
            refused += 1;
        }
        for (status, body) in [(status, &body), (read_status, &read_body)] {
            if status != 200 {
                failed += 1;
                assert!(matches!(status, 500 | 503), "{status}: {body}");
                assert!(body["code"].is_string(), "{body}");
                let text = body.to_string();
                assert!(!text.contains(&patient), "nothing of the request: {text}");
            }
        }
        if status == 200 {
            let receipt: AuditReceipt = serde_json::from_value(body).unwrap();
            acked = receipt.highest_contiguous_seq;
        }
    }
    assert_eq!(acked, 60, "every event acknowledged in the end");
    assert!(cuts > 0, "connections were cut");
    // A later read succeeds on a new connection.
    assert_eq!(
        server
            .get(&format!("/v1/patients/{patient}"), &token)
            .await
            .0,
        200
    );
    answered += 1;
    // No chart left without its disclosure event. (A read whose commit landed as its
    // connection was cut may be recorded though it answered 500: recorded, never missing.)
    let chart_events: Vec<String> = sqlx::query_scalar(
        "SELECT event_json FROM audit_events WHERE clinic_id = $1 ORDER BY leaf_index",
    )
    .bind(Uuid::from_u128(0xD0).to_string())
    .fetch_all(&server.owner_pool().await)
    .await
    .unwrap();
    let chart_events: Vec<serde_json::Value> = chart_events
        .iter()
        .map(|e| serde_json::from_str::<serde_json::Value>(e).unwrap())
        .filter(|e| e["route"] == "/v1/patients/{patient_id}")
        .collect();
    // A read the failure caught is recorded as a failed view naming no patient.
    let (disclosed, failures): (Vec<_>, Vec<_>) = chart_events
        .iter()
        .partition(|e| e["patient_id"] == patient.as_str());
    assert!(
        failures
            .iter()
            .all(|e| e["outcome"] == "failure" && e["patient_id"].is_null()),
        "{failures:?}"
    );
    let disclosed = disclosed.len() as u64;
    assert!(
        (answered..=answered + refused).contains(&disclosed),
        "{disclosed} events for {answered} reads answered and {refused} refused"
    );
    let stored: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT device_seq, COUNT(*) FROM audit_events WHERE device_id = $1
         GROUP BY device_seq ORDER BY device_seq",
    )
    .bind(s.device.id.to_string())
    .fetch_all(&server.owner_pool().await)
    .await
    .unwrap();
    assert_eq!(stored, (1..=60).map(|seq| (seq, 1)).collect::<Vec<_>>());
    let out = crate::harness::run_cli(&server, &["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{failed} requests caught by {cuts} cut connections failed cleanly");
}

/// On PostgreSQL, audit uploads wait for their clinic's row one at a time (per clinic, in
/// each instance): a person's write waiting with ten uploads of their clinic goes after at
/// most one of them, where PostgreSQL's own queue for the row would put it after all ten;
/// and an upload to another clinic does not wait behind this clinic's line. (The SQLite
/// turn has its own test, `store::tests::a_persons_write_waits_behind_one_background_write_not_all`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_write_waits_behind_one_upload_of_their_clinic_not_all() {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    let server = crate::harness::TestServer::start().await;
    assert!(server.database.is_some(), "the PostgreSQL leg");
    let (a, b) = (Uuid::from_u128(0xB1), Uuid::from_u128(0xB2));
    server.seed(0xB1, "Clinic B1").await;
    server.seed(0xB2, "Clinic B2").await;
    // Clinic A's row, held from outside the server as a long write would hold it.
    let owner = server.owner_pool().await;
    let mut holder = owner.begin().await.unwrap();
    sqlx::query("UPDATE clinics SET name = name WHERE id = $1")
        .bind(a.to_string())
        .execute(&mut *holder)
        .await
        .unwrap();

    let order = Arc::new(Mutex::new(Vec::new()));
    let write = |clinic: Uuid, background: bool| {
        let (store, order) = (server.store.clone(), Arc::clone(&order));
        tokio::spawn(async move {
            let tx = if background {
                store.begin_background_write(clinic).await.unwrap()
            } else {
                let mut tx = store.begin_write().await.unwrap();
                tx.lock_clinic(clinic).await.unwrap();
                tx
            };
            let who = match (clinic == a, background) {
                (true, true) => "upload",
                (true, false) => "person",
                (false, _) => "other clinic's upload",
            };
            order.lock().unwrap().push(who);
            tx.commit().await.unwrap();
        })
    };
    let mut waiting: Vec<_> = (0..10).map(|_| write(a, true)).collect();
    // Time for the uploads to queue; were one still on its way, it would only queue later.
    tokio::time::sleep(Duration::from_millis(300)).await;
    waiting.push(write(a, false));
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::time::timeout(Duration::from_secs(30), write(b, true))
        .await
        .expect("another clinic's upload goes ahead while clinic A's row is held")
        .unwrap();
    assert_eq!(
        *order.lock().unwrap(),
        ["other clinic's upload"],
        "clinic A's writes still wait"
    );

    holder.commit().await.unwrap();
    for task in waiting {
        task.await.unwrap();
    }
    let order = order.lock().unwrap().clone();
    assert_eq!(order.len(), 12);
    let person = order.iter().position(|w| *w == "person").unwrap();
    assert!(
        person <= 2,
        "the person's write came after {} uploads",
        person - 1
    );
}
