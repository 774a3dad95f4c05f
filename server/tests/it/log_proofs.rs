//! Proofs served from the stored log, which keeps only subtrees of 16 leaves or more and
//! computes smaller ones from event hashes: for every size of a log that crosses the 16,
//! 32 and 64 boundaries, every inclusion and every consistency proof verifies against the
//! root of the events themselves, and the frontier read back is the one ingest grew. Events
//! stored before the log existed are placed in it at start.

use clinicdesk_protocol::audit::{Hash32, SignedAuditEvent};
use clinicdesk_protocol::merkle::{Frontier, verify_consistency, verify_inclusion};
use clinicdesk_server::audit::log;
use clinicdesk_server::store::{StoreLocation, at_rest};
use sqlx::Row;

use crate::audit_log::event;
use crate::harness::{embedded_in, own_pool, state_in};
use crate::tamper::{enroll, seeded_store, sign, upload};

#[tokio::test]
async fn every_proof_of_every_size_verifies_against_the_events() {
    let (dir, clock, state, clinic, user) = seeded_store().await;
    let device = enroll(&state, &clock, clinic).await;
    let mut prev = Hash32::GENESIS;
    let mut seq = 0;
    // Uneven batches, so subtrees are completed inside batches and across them.
    for size in [1usize, 6, 9, 15, 16, 1, 17, 5] {
        let batch: Vec<SignedAuditEvent> = (0..size)
            .map(|_| {
                seq += 1;
                let e = event(&device, user, seq, prev);
                prev = e.hash();
                sign(&device, e)
            })
            .collect();
        clock.advance_ms(1000);
        upload(&state, &device, batch).await;
    }
    let db = own_pool(&embedded_in(dir.path())).await;
    let mut conn = db.acquire().await.unwrap();
    let hashes: Vec<Hash32> =
        sqlx::query("SELECT hash FROM audit_events WHERE clinic_id = $1 ORDER BY leaf_index")
            .bind(clinic.to_string())
            .fetch_all(&mut *conn)
            .await
            .unwrap()
            .iter()
            .map(|r| Hash32::from_hex(r.get::<&str, _>(0)).unwrap())
            .collect();
    let n = hashes.len() as u64;
    assert!(n > 64, "the log crosses the 64-leaf boundary: {n}");
    let stored_levels: Vec<i64> = sqlx::query_scalar("SELECT DISTINCT level FROM audit_nodes")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    assert!(stored_levels.iter().all(|l| *l >= 4), "{stored_levels:?}");

    // The roots of every prefix, from the events alone.
    let mut tree = Frontier::default();
    let roots: Vec<Hash32> = std::iter::once(tree.root())
        .chain(hashes.iter().map(|h| {
            tree.push(h);
            tree.root()
        }))
        .collect();
    assert_eq!(
        log::frontier(&mut conn, clinic).await.unwrap(),
        tree,
        "the stored frontier"
    );
    for size in 1..=n {
        let root = &roots[size as usize];
        for leaf in 0..size {
            let proof = log::inclusion(&mut conn, clinic, leaf, size).await.unwrap();
            verify_inclusion(root, size, leaf, &hashes[leaf as usize], &proof.hashes)
                .unwrap_or_else(|e| panic!("leaf {leaf} of {size}: {e}"));
        }
        for old in 1..=size {
            let proof = log::consistency(&mut conn, clinic, old, size)
                .await
                .unwrap();
            verify_consistency(old, &roots[old as usize], size, root, &proof.hashes)
                .unwrap_or_else(|e| panic!("{old} to {size}: {e}"));
        }
    }
    drop(conn);
    db.close().await;
}

/// A data directory older than the log holds events that have no place in it. At start,
/// the server places them in the order they were stored, stores their subtrees, signs a
/// checkpoint and moves each workstation's upload progress over them; the whole trail
/// then verifies, and a placed event's place cannot be changed again.
#[tokio::test]
async fn events_stored_before_the_log_are_adopted_at_start() {
    let (dir, clock, state, clinic, user) = seeded_store().await;
    let device = enroll(&state, &clock, clinic).await;
    let mut prev = Hash32::GENESIS;
    for seq in 1..=20 {
        let e = event(&device, user, seq, prev);
        prev = e.hash();
        clock.advance_ms(1000);
        upload(&state, &device, vec![sign(&device, e)]).await;
    }
    let location = embedded_in(dir.path());
    let db = own_pool(&location).await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(&db)
        .await
        .unwrap();
    // The server stops (its pool goes with its state) before the file is edited.
    db.close().await;
    drop(state);

    // Back to a data directory from before the log: no places, no subtrees, no
    // checkpoints, no upload progress (triggers set aside to get there, then restored).
    let StoreLocation::Embedded(file) = &location else {
        unreachable!("embedded_in is the embedded store")
    };
    let raw = sqlx::SqlitePool::connect_with(at_rest::sqlite_options(file).unwrap())
        .await
        .unwrap();
    let triggers: Vec<(String, String)> =
        sqlx::query_as("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
            .fetch_all(&raw)
            .await
            .unwrap();
    for (name, _) in &triggers {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TRIGGER {name}")))
            .execute(&raw)
            .await
            .unwrap();
    }
    for undo in [
        "UPDATE audit_events SET leaf_index = NULL",
        "DELETE FROM audit_nodes",
        "DELETE FROM audit_checkpoints",
        "DELETE FROM audit_device_heads",
    ] {
        sqlx::query(undo).execute(&raw).await.unwrap();
    }
    for (_, sql) in &triggers {
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&raw)
            .await
            .unwrap();
    }
    raw.close().await;

    let state = state_in(dir.path(), std::sync::Arc::new(clock.clone())).await;
    let db = own_pool(&location).await;
    let unplaced: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE leaf_index IS NULL")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(unplaced, 0);
    let report = crate::harness::verify_trail(&state.store, &state.audit_key.public_key(), &[])
        .await
        .unwrap();
    assert_eq!(report.events, u64::try_from(stored).unwrap());
    assert_eq!(report.checkpoints, 1, "one checkpoint of the adopted log");
    let nodes: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_nodes WHERE level >= 4")
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(nodes >= 1, "the subtree of the first 16 leaves is stored");
    let head: i64 =
        sqlx::query_scalar("SELECT contiguous_seq FROM audit_device_heads WHERE device_id = $1")
            .bind(device.id.to_string())
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(head, 20);
    let replaced = sqlx::query("UPDATE audit_events SET leaf_index = leaf_index + 1000")
        .execute(&db)
        .await;
    assert!(replaced.unwrap_err().to_string().contains("append-only"));
    db.close().await;
}
