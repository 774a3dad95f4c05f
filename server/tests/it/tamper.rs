//! `audit verify` against an attacker with write access to the database: random
//! modifications, deletions, insertions and reorderings of stored events, leaves and
//! checkpoints (triggers dropped first, as such an attacker would) are all caught, and a
//! changed event is named. The pristine log is built through the real ingest code.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use clinicdesk_protocol::audit::{AuditEvent, Hash32, RequestSeen, SignedAuditEvent, to_hex};
use clinicdesk_protocol::wire::{AuditUpload, UserInfo};
use clinicdesk_server::AppState;
use clinicdesk_server::admin::seed::seed_clinic;
use clinicdesk_server::audit::ingest::ingest;
use clinicdesk_server::audit::verify::{Findings, Location, Problem, VerifyError};
use clinicdesk_server::scope::{ClinicScope, Console};
use clinicdesk_server::secrets::random::{hash_secret, normalize_code};
use clinicdesk_server::secrets::store_key;
use clinicdesk_server::store::{Store, StoreLocation, at_rest};
use clinicdesk_server::time::{Clock, ManualClock};
use ed25519_dalek::{Signer, SigningKey};
use proptest::prelude::*;
use sqlx::{Row, SqlitePool};
use uuid::Uuid;

use crate::audit_log::event;
use crate::harness::{START_MS, TestDevice, embedded_in, own_pool, rand32, state_in};

const EVENTS_PER_DEVICE: u64 = 12;

struct Pristine {
    dir: tempfile::TempDir,
    server_key: clinicdesk_protocol::signature::PublicKey,
    /// Event ids in leaf order.
    leaves: Vec<Uuid>,
}

/// The uploads' request as the server saw it.
pub(crate) fn seen() -> RequestSeen {
    RequestSeen {
        client_ip: "127.0.0.1".into(),
        user_agent: "tamper test".into(),
        session_device_id: None,
    }
}

/// A workstation enrolled through the real registry code.
pub(crate) async fn enroll(state: &AppState, clock: &ManualClock, clinic: Uuid) -> TestDevice {
    let code = clinicdesk_server::admin::seed::issue_enrollment_code(
        &state.store,
        clock,
        clinic,
        15,
        None,
    )
    .await
    .unwrap();
    let key = SigningKey::from_bytes(&rand32());
    let recovery = SigningKey::from_bytes(&rand32());
    let secret = rand32();
    let id = Uuid::now_v7();
    let escrow = clinicdesk_server::devices::registry::escrow_of(
        state,
        id,
        &secret,
        &to_hex(recovery.verifying_key().as_bytes()),
    )
    .unwrap();
    clinicdesk_server::devices::registry::enroll(
        state,
        &hash_secret(&normalize_code(&code)),
        id,
        "Tamper test",
        &to_hex(key.verifying_key().as_bytes()),
        &escrow,
        RequestSeen {
            session_device_id: Some(id),
            ..seen()
        },
    )
    .await
    .unwrap();
    // Everyone of the clinic signs in on it once, as the app has them do before it records
    // anything they do: ingest checks each event's actor against the sign-ins.
    let scope = ClinicScope::of_console(&Console::operator(), clinic);
    for (user_id, role) in state.store.users_and_roles(&scope).await.unwrap() {
        let user = UserInfo {
            user_id,
            username: String::new(),
            display_name: String::new(),
            role,
            clinic_id: clinic,
        };
        state
            .store
            .insert_session(&to_hex(&rand32()), &user, id, clock.now_ms(), false)
            .await
            .unwrap();
    }
    TestDevice {
        key,
        recovery,
        secret,
        id,
        clinic_id: clinic,
        audit_public_key: String::new(),
    }
}

pub(crate) fn sign(device: &TestDevice, event: AuditEvent) -> SignedAuditEvent {
    SignedAuditEvent {
        signature: to_hex(&device.key.sign(&event.canonical_bytes()).to_bytes()),
        event,
    }
}

/// Stores a batch through the real ingest code.
pub(crate) async fn upload(state: &AppState, device: &TestDevice, events: Vec<SignedAuditEvent>) {
    let upload = AuditUpload {
        device_id: device.id,
        events,
        held_receipt: None,
    };
    ingest(state, &upload, &seen()).await.unwrap();
}

/// A fresh embedded store with one seeded clinic: (dir, clock, state, clinic, a user).
pub(crate) async fn seeded_store() -> (tempfile::TempDir, ManualClock, AppState, Uuid, Uuid) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    let state = state_in(dir.path(), Arc::new(clock.clone())).await;
    let report = seed_clinic(&state.store, &clock, Uuid::from_u128(0xA), "Clinic A", 15)
        .await
        .unwrap();
    let db = own_pool(&embedded_in(dir.path())).await;
    // A clinician: the role the test events claim.
    let user: String = sqlx::query_scalar("SELECT id FROM users WHERE role = 'clinician' LIMIT 1")
        .fetch_one(&db)
        .await
        .unwrap();
    db.close().await;
    let user = Uuid::parse_str(&user).unwrap();
    (dir, clock, state, report.clinic_id, user)
}

async fn build() -> Pristine {
    let (dir, clock, state, clinic, user) = seeded_store().await;
    let mut devices = Vec::new();
    for _ in 0..2 {
        devices.push(enroll(&state, &clock, clinic).await);
    }
    // Interleaved uneven batches, so the log mixes devices and has many checkpoints.
    let mut tips = vec![(0u64, Hash32::GENESIS); devices.len()];
    let mut round = 0usize;
    while tips.iter().any(|(seq, _)| *seq < EVENTS_PER_DEVICE) {
        for (d, device) in devices.iter().enumerate() {
            let batch: Vec<SignedAuditEvent> = (0..1 + (round + d) % 3)
                .filter_map(|_| {
                    let (seq, prev) = tips[d];
                    (seq < EVENTS_PER_DEVICE).then(|| {
                        let e: AuditEvent = event(device, user, seq + 1, prev);
                        tips[d] = (seq + 1, e.hash());
                        sign(device, e)
                    })
                })
                .collect();
            if !batch.is_empty() {
                clock.advance_ms(1000);
                upload(&state, device, batch).await;
            }
        }
        round += 1;
    }
    let db = own_pool(&embedded_in(dir.path())).await;
    let leaves: Vec<String> = sqlx::query_scalar("SELECT id FROM audit_events ORDER BY leaf_index")
        .fetch_all(&db)
        .await
        .unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let server_key = state.audit_key.public_key();
    // The server stops (its pool goes with its state): the file alone is the pristine log.
    drop(state);
    Pristine {
        server_key,
        dir,
        leaves: leaves.iter().map(|s| Uuid::parse_str(s).unwrap()).collect(),
    }
}

fn pristine() -> &'static Pristine {
    static P: OnceLock<Pristine> = OnceLock::new();
    P.get_or_init(|| tokio::runtime::Runtime::new().unwrap().block_on(build()))
}

/// The tampered copy in `dir` as the verifier reads it (opened as `audit verify` does).
async fn verifier_store(dir: &Path) -> Store {
    Store::open(&embedded_in(dir)).await.unwrap()
}

/// Copies a test data directory's database with what opens it: its wrapped key and the
/// key-encryption keys beside it.
pub(crate) fn copy_store(from: &Path, into: &Path) {
    std::fs::copy(
        from.join("clinicdesk.sqlite3"),
        into.join("clinicdesk.sqlite3"),
    )
    .unwrap();
    std::fs::copy(from.join(store_key::FILE), into.join(store_key::FILE)).unwrap();
    std::fs::create_dir_all(into.join("kek")).unwrap();
    for entry in std::fs::read_dir(from.join("kek")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, into.join("kek").join(path.file_name().unwrap())).unwrap();
    }
}

/// A copy of the pristine database, opened the way an attacker would: no migrations, no
/// triggers.
async fn attacker_copy(into: &Path) -> SqlitePool {
    attacker_copy_of(pristine().dir.path(), into).await
}

/// A copy of the database in `from`, opened without triggers: by an insider who has the
/// database key too (the file alone opens nothing; `at_rest` tests that).
async fn attacker_copy_of(from: &Path, into: &Path) -> SqlitePool {
    copy_store(from, into);
    let StoreLocation::Embedded(file) = embedded_in(into) else {
        unreachable!("embedded_in is the embedded store")
    };
    let pool =
        SqlitePool::connect_with(at_rest::sqlite_options(&file).unwrap().foreign_keys(false))
            .await
            .unwrap();
    let triggers: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            .fetch_all(&pool)
            .await
            .unwrap();
    for t in triggers {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TRIGGER {t}")))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool
}

#[derive(Debug, Clone)]
enum Tamper {
    /// Change one field of a stored event.
    Edit { leaf: usize, field: usize },
    /// Change a field and store the matching hash too (no device key to re-sign).
    EditAndRehash { leaf: usize },
    /// Remove an event (its row holds its leaf).
    Delete { leaf: usize },
    /// Take an event out of the log, keeping the event.
    Unplace { leaf: usize },
    /// Add a made-up event of a device at the end of the log.
    Insert { leaf: usize, with_leaf: bool },
    /// Swap two leaves' events.
    Swap { a: usize, b: usize },
    /// Change a checkpoint's root.
    EditCheckpoint { nth: usize },
    /// Change a column that searches read beside the signed event (`DERIVED`): to another
    /// well-formed value, or to one that cannot be read as the column's type.
    EditColumn {
        leaf: usize,
        column: usize,
        unreadable: bool,
    },
}

/// The columns stored beside the signed event, derived from it, that searches, the patient
/// access report and the walk select on; with a well-formed change of each.
const DERIVED: &[(&str, &str)] = &[
    ("id", "$1"),
    ("device_id", "$1"),
    ("device_seq", "device_seq + 1000"),
    ("actor_user_id", "$1"),
    // Hides an access from the patient's report, or gives it to another patient.
    (
        "patient_id",
        "CASE WHEN patient_id IS NULL THEN $1 ELSE NULL END",
    ),
    (
        "action",
        "CASE WHEN action = 'export' THEN 'view' ELSE 'export' END",
    ),
    ("occurred_at_ms", "occurred_at_ms + 1"),
];

fn tamper() -> impl Strategy<Value = Tamper> {
    // Every leaf: the two enrollments (server chain) first, then the workstations' events.
    let n = (EVENTS_PER_DEVICE * 2 + 2) as usize;
    prop_oneof![
        (0..n, 0..5usize).prop_map(|(leaf, field)| Tamper::Edit { leaf, field }),
        (0..n).prop_map(|leaf| Tamper::EditAndRehash { leaf }),
        (0..n).prop_map(|leaf| Tamper::Delete { leaf }),
        (0..n).prop_map(|leaf| Tamper::Unplace { leaf }),
        // A forged workstation event, after one of theirs.
        (2..n, any::<bool>()).prop_map(|(leaf, with_leaf)| Tamper::Insert { leaf, with_leaf }),
        (0..n, 0..n)
            .prop_filter("two leaves", |(a, b)| a != b)
            .prop_map(|(a, b)| Tamper::Swap { a, b }),
        (0..8usize).prop_map(|nth| Tamper::EditCheckpoint { nth }),
        (0..n, 0..DERIVED.len(), any::<bool>()).prop_map(|(leaf, column, unreadable)| {
            Tamper::EditColumn {
                leaf,
                column,
                unreadable,
            }
        }),
    ]
}

async fn event_json(pool: &SqlitePool, id: Uuid) -> AuditEvent {
    let json: String = sqlx::query_scalar("SELECT event_json FROM audit_events WHERE id = $1")
        .bind(id.to_string())
        .fetch_one(pool)
        .await
        .unwrap();
    serde_json::from_str(&json).unwrap()
}

async fn set_event(pool: &SqlitePool, id: Uuid, e: &AuditEvent, rehash: bool) {
    let json = serde_json::to_string(e).unwrap();
    let query = if rehash {
        sqlx::query("UPDATE audit_events SET event_json = $1, hash = $2 WHERE id = $3")
            .bind(json)
            .bind(e.hash().to_hex())
    } else {
        sqlx::query("UPDATE audit_events SET event_json = $1 WHERE id = $2").bind(json)
    };
    query.bind(id.to_string()).execute(pool).await.unwrap();
}

fn edit(e: &mut AuditEvent, field: usize) {
    match field {
        0 => e.action = clinicdesk_protocol::audit::AuditAction::Export,
        1 => e.patient_id = Some(Uuid::from_u128(0xBAD)),
        2 => e.occurred_at_ms += 3_600_000,
        3 => e.fields.push("medications".into()),
        _ => e.route = "elsewhere".into(),
    }
}

/// Applies the tampering; returns the event the verifier must name, if one is changed.
async fn apply(pool: &SqlitePool, t: &Tamper) -> Option<Uuid> {
    let leaves = &pristine().leaves;
    match *t {
        Tamper::Edit { leaf, field } => {
            let id = leaves[leaf];
            let mut e = event_json(pool, id).await;
            edit(&mut e, field);
            set_event(pool, id, &e, false).await;
            Some(id)
        }
        Tamper::EditAndRehash { leaf } => {
            let id = leaves[leaf];
            let mut e = event_json(pool, id).await;
            edit(&mut e, 1);
            set_event(pool, id, &e, true).await;
            Some(id)
        }
        Tamper::Delete { leaf } => {
            sqlx::query("DELETE FROM audit_events WHERE id = $1")
                .bind(leaves[leaf].to_string())
                .execute(pool)
                .await
                .unwrap();
            None
        }
        Tamper::Unplace { leaf } => {
            sqlx::query("UPDATE audit_events SET leaf_index = NULL WHERE id = $1")
                .bind(leaves[leaf].to_string())
                .execute(pool)
                .await
                .unwrap();
            // The last leaf is named as an event not in the log; any other leaves a gap.
            (leaf + 1 == leaves.len()).then_some(leaves[leaf])
        }
        Tamper::Insert { leaf, with_leaf } => {
            let template = event_json(pool, leaves[leaf]).await;
            let mut forged = template.clone();
            forged.id = Uuid::now_v7();
            forged.device_seq = EVENTS_PER_DEVICE + 1;
            let row = sqlx::query(
                "SELECT hash, signature FROM audit_events WHERE device_id = $1 AND device_seq = $2",
            )
            .bind(forged.device_id.to_string())
            .bind(i64::try_from(EVENTS_PER_DEVICE).unwrap())
            .fetch_one(pool)
            .await
            .unwrap();
            forged.prev_hash = Hash32::from_hex(row.get::<&str, _>(0)).unwrap();
            let n = i64::try_from(leaves.len()).unwrap();
            sqlx::query(
                "INSERT INTO audit_events (id, clinic_id, device_id, device_seq, actor_user_id, patient_id,
                   action, occurred_at_ms, event_json, hash, signature, received_at_ms, leaf_index)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(forged.id.to_string())
            .bind(forged.clinic_id.to_string())
            .bind(forged.device_id.to_string())
            .bind(i64::try_from(forged.device_seq).unwrap())
            .bind(forged.actor_user_id.to_string())
            .bind(forged.patient_id.map(|p| p.to_string()))
            .bind(forged.action.as_str())
            .bind(forged.occurred_at_ms)
            .bind(serde_json::to_string(&forged).unwrap())
            .bind(forged.hash().to_hex())
            .bind(row.get::<String, _>(1))
            .bind(START_MS)
            .bind(with_leaf.then_some(n))
            .execute(pool)
            .await
            .unwrap();
            Some(forged.id)
        }
        Tamper::Swap { a, b } => {
            let (a, b) = (i64::try_from(a).unwrap(), i64::try_from(b).unwrap());
            for (from, to) in [(a, -1), (b, a), (-1, b)] {
                sqlx::query("UPDATE audit_events SET leaf_index = $1 WHERE leaf_index = $2")
                    .bind(to)
                    .bind(from)
                    .execute(pool)
                    .await
                    .unwrap();
            }
            None
        }
        Tamper::EditColumn {
            leaf,
            column,
            unreadable,
        } => {
            let (name, changed) = DERIVED[column];
            let fresh = format!("'{}'", Uuid::now_v7());
            let value = if unreadable {
                "'#'".to_owned()
            } else {
                changed.replace("$1", &fresh)
            };
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE audit_events SET {name} = {value} WHERE id = $1"
            )))
            .bind(leaves[leaf].to_string())
            .execute(pool)
            .await
            .unwrap();
            Some(leaves[leaf])
        }
        Tamper::EditCheckpoint { nth } => {
            sqlx::query(
                "UPDATE audit_checkpoints SET root_hash = $1
                 WHERE tree_size = (SELECT tree_size FROM audit_checkpoints ORDER BY tree_size LIMIT 1 OFFSET $2)",
            )
            .bind(Hash32([7; 32]).to_hex())
            .bind(i64::try_from(nth).unwrap())
            .execute(pool)
            .await
            .unwrap();
            None
        }
    }
}

#[test]
fn the_pristine_log_verifies() {
    let p = pristine();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        attacker_copy(dir.path()).await.close().await;
        let report =
            crate::harness::verify_trail(&verifier_store(dir.path()).await, &p.server_key, &[])
                .await
                .unwrap();
        assert_eq!(
            report.events,
            EVENTS_PER_DEVICE * 2 + 2,
            "and the two enrollments"
        );
        assert!(report.checkpoints > 8, "{report:?}");
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_tampering_is_caught_and_a_changed_event_is_named(t in tamper()) {
        let p = pristine();
        let outcome = tokio::runtime::Runtime::new().unwrap().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let pool = attacker_copy(dir.path()).await;
            let named = apply(&pool, &t).await;
            pool.close().await;
            (crate::harness::verify_trail(&verifier_store(dir.path()).await, &p.server_key, &[]).await, named)
        });
        match outcome {
            (Err(VerifyError::Tampered(found)), named) => {
                if let Some(id) = named {
                    let located = match &found.first().location {
                        Location::Event { event_id, .. } | Location::Unlogged(event_id) => *event_id == id,
                        Location::Leaf(_) | Location::Node { .. } | Location::Checkpoint(_) | Location::Alert { .. }
                        | Location::Version { .. } | Location::Record { .. } => false,
                    };
                    // A forged event past every checkpoint moves no signed root: it is
                    // named by its signature (with a leaf) or as not in the log (without).
                    prop_assert!(located, "{t:?} -> {found}");
                }
            }
            (other, _) => prop_assert!(false, "{t:?} went unnoticed: {:?}", other.map(|r| r.events)),
        }
    }
}

/// Each finding's place and problem, in the order verify found them.
pub(crate) fn named(found: &Findings) -> Vec<(Location, Problem)> {
    found
        .all()
        .iter()
        .map(|t| (t.location.clone(), t.problem))
        .collect()
}

/// Every column stored beside the signed event for searches to select on is checked against
/// the event, whether changed to another well-formed value or to one that cannot be read;
/// the event is named with its leaf and the column, and the walk goes on: a second change
/// further on is named too.
#[test]
fn every_search_column_is_checked_against_its_signed_event() {
    let p = pristine();
    // A server-chain event (no patient) and a workstation's.
    for leaf in [0, 7] {
        for (column, (name, _)) in DERIVED.iter().enumerate() {
            for unreadable in [false, true] {
                let t = Tamper::EditColumn {
                    leaf,
                    column,
                    unreadable,
                };
                let found = tokio::runtime::Runtime::new().unwrap().block_on(async {
                    let dir = tempfile::tempdir().unwrap();
                    let pool = attacker_copy(dir.path()).await;
                    apply(&pool, &t).await;
                    pool.close().await;
                    crate::harness::verify_trail(
                        &verifier_store(dir.path()).await,
                        &p.server_key,
                        &[],
                    )
                    .await
                });
                let Err(VerifyError::Tampered(found)) = found else {
                    panic!("{t:?} ({name}) went unnoticed: {found:?}");
                };
                // Only an integer column can hold a value of the wrong type; text is text.
                let integer = matches!(*name, "device_seq" | "occurred_at_ms");
                let problem = if unreadable && integer {
                    Problem::Unreadable(name)
                } else {
                    Problem::Column(name)
                };
                let first = found.first();
                assert_eq!(
                    (&first.location, first.problem),
                    (
                        &Location::Event {
                            event_id: p.leaves[leaf],
                            leaf_index: leaf as u64,
                        },
                        problem
                    ),
                    "{t:?}: {found}"
                );
            }
        }
    }

    // Two rows changed: both are named, in log order, and the walk reaches the end.
    let found = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let pool = attacker_copy(dir.path()).await;
        for (leaf, column) in [(3, 4), (20, 0)] {
            let t = Tamper::EditColumn {
                leaf,
                column,
                unreadable: true,
            };
            apply(&pool, &t).await;
        }
        pool.close().await;
        crate::harness::verify_trail(&verifier_store(dir.path()).await, &p.server_key, &[]).await
    });
    let Err(VerifyError::Tampered(found)) = found else {
        panic!("two changed rows went unnoticed: {found:?}");
    };
    let named = crate::tamper::named(&found);
    assert_eq!(
        named,
        [
            (
                Location::Event {
                    event_id: p.leaves[3],
                    leaf_index: 3
                },
                Problem::Column("patient_id")
            ),
            (
                Location::Event {
                    event_id: p.leaves[20],
                    leaf_index: 20
                },
                Problem::Column("id")
            ),
        ]
    );
}

/// The log stores only subtrees of 16 leaves or more; each is checked against the
/// events under it, and a changed, removed or made-up one is named.
#[test]
fn a_stored_subtree_changed_removed_or_made_up_is_named() {
    let p = pristine();
    let first = Location::Node { level: 4, index: 0 };
    for (attack, location, problem) in [
        (
            "UPDATE audit_nodes SET hash = zeroblob(32)",
            first.clone(),
            Problem::NodeMismatch,
        ),
        ("DELETE FROM audit_nodes", first, Problem::NodeMissing),
        // The pristine log holds 26 leaves: the second subtree of 16 is not complete.
        (
            "INSERT INTO audit_nodes SELECT clinic_id, level, 1, hash FROM audit_nodes",
            Location::Node { level: 4, index: 1 },
            Problem::NodeBeyondLog,
        ),
    ] {
        let found = tokio::runtime::Runtime::new().unwrap().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let pool = attacker_copy(dir.path()).await;
            let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_nodes")
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(stored, 1, "leaves 0..16, and nothing below level 4");
            sqlx::query(attack).execute(&pool).await.unwrap();
            pool.close().await;
            crate::harness::verify_trail(&verifier_store(dir.path()).await, &p.server_key, &[])
                .await
        });
        match found {
            Err(VerifyError::Tampered(t)) => {
                let t = t.first().clone();
                assert_eq!((t.location, t.problem), (location, problem), "{attack}");
            }
            other => panic!("{attack} not caught: {other:?}"),
        }
    }
}

#[test]
fn the_cli_exits_non_zero_and_names_the_event() {
    let p = pristine();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        p.dir.path().join(clinicdesk_server::audit::key::KEY_FILE),
        dir.path().join(clinicdesk_server::audit::key::KEY_FILE),
    )
    .unwrap();
    let target = p.leaves[5];
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let pool = attacker_copy(dir.path()).await;
        let ok = std::process::Command::new(env!("CARGO_BIN_EXE_clinicdesk-server"))
            .args(["audit", "verify", "--data-dir"])
            .arg(dir.path())
            .arg("--key-dir")
            .arg(dir.path().join("kek"))
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        assert!(String::from_utf8_lossy(&ok.stdout).contains("26 event(s)"));
        apply(&pool, &Tamper::Edit { leaf: 5, field: 0 }).await;
        // A row whose id column no longer reads as an id: named, and the walk goes on.
        let unreadable = Tamper::EditColumn {
            leaf: 9,
            column: 0,
            unreadable: true,
        };
        apply(&pool, &unreadable).await;
        pool.close().await;
    });
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_clinicdesk-server"))
        .args(["audit", "verify", "--data-dir"])
        .arg(dir.path())
        .arg("--key-dir")
        .arg(dir.path().join("kek"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains(&format!("event {target}")), "{stderr}");
    let id_changed = format!(
        "event {} (leaf 9): its id column does not match",
        p.leaves[9]
    );
    assert!(stderr.contains(&id_changed), "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");
}

#[tokio::test]
async fn seeded_synthetic_trails_go_through_ingest_and_verify() {
    let (_dir, _clock, state, clinic, _user) = seeded_store().await;
    let mut shown = Vec::new();
    let n = clinicdesk_server::audit::synthetic::seed_audit_events(&state, clinic, 1203, |d| {
        shown.push(d)
    })
    .await
    .unwrap();
    assert_eq!(n, 1203);
    assert_eq!(shown, vec![500, 1000, 1203]);
    let verified = crate::harness::verify_trail(&state.store, &state.audit_key.public_key(), &[])
        .await
        .unwrap();
    // And the server chain's `device_enrolled` of each synthetic workstation.
    let devices = clinicdesk_server::audit::synthetic::DEVICES as u64;
    assert_eq!((verified.events, verified.alerts), (1203 + devices, 0));
    assert!(verified.gaps.is_empty());
}

#[derive(Debug, Clone, Copy)]
enum AlertAttack {
    /// Remove the alert, so nobody sees the device forked.
    Remove,
    /// Change what the refused event says.
    Alter,
    /// Change it and store the matching hash (no device key to re-sign).
    AlterAndRehash,
    /// Present a real, signed event of the device as a fork it never made.
    MakeUp,
    /// Call a fork a broken link.
    Rekind,
}

/// A fork kept as a tamper alert is also a leaf of the log (a `tamper_alert` server event
/// naming the refused event's hash), so its evidence can be neither removed, altered nor
/// made up without `audit verify` noticing.
#[tokio::test]
async fn tamper_alerts_are_logged_and_cannot_be_removed_changed_or_made_up() {
    let (dir, clock, state, clinic, user) = seeded_store().await;
    let device = enroll(&state, &clock, clinic).await;
    let mut chain = Vec::new();
    let mut prev = Hash32::GENESIS;
    for seq in 1..=3 {
        let e = event(&device, user, seq, prev);
        prev = e.hash();
        chain.push(sign(&device, e));
    }
    let upload = |events: Vec<SignedAuditEvent>| AuditUpload {
        device_id: device.id,
        events,
        held_receipt: None,
    };
    ingest(&state, &upload(chain.clone()), &seen())
        .await
        .unwrap();
    let fork = sign(&device, event(&device, user, 2, chain[0].event.hash()));
    let receipt = ingest(&state, &upload(vec![fork.clone()]), &seen())
        .await
        .unwrap();
    assert_eq!(receipt.forked, vec![2]);
    let key = state.audit_key.public_key();
    let clean = crate::harness::verify_trail(&state.store, &key, &[])
        .await
        .unwrap();
    assert_eq!(clean.alerts, 1);
    let db = own_pool(&embedded_in(dir.path())).await;
    let row = sqlx::query(
        "SELECT id, leaf_index, event_json FROM audit_events WHERE action = 'tamper_alert'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let logged = Location::Event {
        event_id: Uuid::parse_str(row.get::<&str, _>(0)).unwrap(),
        leaf_index: u64::try_from(row.get::<i64, _>(1)).unwrap(),
    };
    let logged_event: AuditEvent = serde_json::from_str(row.get::<&str, _>(2)).unwrap();
    assert_eq!(
        (logged_event.resource_id, logged_event.fields),
        (fork.event.hash().to_hex(), vec!["fork".to_owned()])
    );
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    drop(state);

    let at = |device_seq| Location::Alert {
        device_id: device.id,
        device_seq,
    };
    for (attack, location, problem) in [
        (AlertAttack::Remove, logged, Problem::AlertMissing),
        (AlertAttack::Alter, at(2), Problem::HashMismatch),
        (AlertAttack::AlterAndRehash, at(2), Problem::BadSignature),
        (AlertAttack::MakeUp, at(3), Problem::AlertNotLogged),
        (AlertAttack::Rekind, at(2), Problem::AlertMismatch),
    ] {
        let copy = tempfile::tempdir().unwrap();
        let pool = attacker_copy_of(dir.path(), copy.path()).await;
        let set_evidence = |e: &AuditEvent, hash: Option<Hash32>| {
            let query = match hash {
                Some(h) => sqlx::query("UPDATE audit_alerts SET event_json = $1, hash = $2")
                    .bind(serde_json::to_string(e).unwrap())
                    .bind(h.to_hex()),
                None => sqlx::query("UPDATE audit_alerts SET event_json = $1")
                    .bind(serde_json::to_string(e).unwrap()),
            };
            query.execute(&pool)
        };
        let mut altered = fork.event.clone();
        altered.fields.push("phone".into());
        match attack {
            AlertAttack::Remove => {
                sqlx::query("DELETE FROM audit_alerts")
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            AlertAttack::Alter => {
                set_evidence(&altered, None).await.unwrap();
            }
            AlertAttack::AlterAndRehash => {
                set_evidence(&altered, Some(altered.hash())).await.unwrap();
            }
            AlertAttack::MakeUp => {
                sqlx::query(
                    "INSERT INTO audit_alerts (clinic_id, device_id, device_seq, kind, hash,
                       event_json, signature, received_at_ms)
                     SELECT clinic_id, device_id, device_seq, 'fork', hash, event_json, signature,
                       received_at_ms FROM audit_events WHERE device_id = $1 AND device_seq = 3",
                )
                .bind(device.id.to_string())
                .execute(&pool)
                .await
                .unwrap();
            }
            AlertAttack::Rekind => {
                sqlx::query("UPDATE audit_alerts SET kind = 'chain_break'")
                    .execute(&pool)
                    .await
                    .unwrap();
            }
        }
        pool.close().await;
        let verifier = verifier_store(copy.path()).await;
        match crate::harness::verify_trail(&verifier, &key, &[]).await {
            Err(VerifyError::Tampered(t)) => {
                let t = t.first().clone();
                assert_eq!((t.location, t.problem), (location, problem), "{attack:?}");
            }
            other => panic!("{attack:?} not caught: {other:?}"),
        }
    }
}
