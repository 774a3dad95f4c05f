//! The clinic's Merkle log in the database: appending leaves inside the ingest
//! transaction, issuing signed checkpoints, and serving inclusion and consistency proofs.
//! The tree math is `clinicdesk_protocol::merkle`; this module only stores and fetches.

use clinicdesk_protocol::audit::Hash32;
use clinicdesk_protocol::merkle::{
    Checkpoint, ConsistencyEvidence, Frontier, InclusionEvidence, NodeId, ProofPlan,
    SignedCheckpoint, assemble, consistency_plan, inclusion_plan, plan_nodes,
};
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::key::AuditKey;
use crate::error::ServerError;
use crate::sql::{Script, Statement, Value, insert_rows};

fn to_i64(v: u64) -> Result<i64, ServerError> {
    i64::try_from(v).map_err(|_| ServerError::Internal("log index overflow"))
}

fn to_u64(v: i64) -> Result<u64, ServerError> {
    u64::try_from(v).map_err(|_| ServerError::Internal("stored log index negative"))
}

fn hash_of(blob: &[u8]) -> Result<Hash32, ServerError> {
    <[u8; 32]>::try_from(blob)
        .map(Hash32)
        .map_err(|_| ServerError::Internal("stored node malformed"))
}

/// Takes SQLite's write lock before anything is read, so that concurrent writers of a
/// clinic's log queue (busy timeout) instead of failing on a stale read snapshot. Every
/// transaction that appends leaves or signs a checkpoint starts with it.
pub async fn lock_clinic(conn: &mut AnyConnection, clinic: Uuid) -> Result<(), ServerError> {
    sqlx::query("UPDATE clinics SET name = name WHERE id = $1")
        .bind(clinic.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// How many leaves the clinic's log holds.
pub async fn tree_size(conn: &mut AnyConnection, clinic: Uuid) -> Result<u64, ServerError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT coalesce(max(leaf_index) + 1, 0) FROM audit_leaves WHERE clinic_id = $1",
    )
    .bind(clinic.to_string())
    .fetch_one(conn)
    .await?;
    to_u64(n)
}

async fn nodes_of(
    conn: &mut AnyConnection,
    clinic: Uuid,
    ids: &[NodeId],
) -> Result<std::collections::HashMap<NodeId, Hash32>, ServerError> {
    let mut out = std::collections::HashMap::with_capacity(ids.len());
    if ids.is_empty() {
        return Ok(out);
    }
    // One statement for all of them (a frontier or proof needs up to ~2 log2 n nodes).
    let mut st =
        crate::sql::Statement::new("SELECT level, idx, hash FROM audit_nodes WHERE clinic_id = ");
    st.bind(clinic.to_string())
        .push(" AND (level, idx) IN (VALUES ");
    for (i, id) in ids.iter().enumerate() {
        st.push(if i == 0 { "(" } else { ", (" })
            .bind(i64::from(id.level))
            .push(", ")
            .bind(to_i64(id.index)?)
            .push(")");
    }
    st.push(")");
    for row in st.query().fetch_all(conn).await? {
        let id = NodeId {
            level: u32::try_from(row.get::<i64, _>(0))
                .map_err(|_| ServerError::Internal("stored node malformed"))?,
            index: to_u64(row.get(1))?,
        };
        out.insert(id, hash_of(row.get::<&[u8], _>(2))?);
    }
    if ids.iter().any(|id| !out.contains_key(id)) {
        return Err(ServerError::Internal("log node missing"));
    }
    Ok(out)
}

/// The right edge of the clinic's tree as stored.
pub async fn frontier(conn: &mut AnyConnection, clinic: Uuid) -> Result<Frontier, ServerError> {
    let size = tree_size(&mut *conn, clinic).await?;
    let ids = Frontier::ids(size);
    let nodes = nodes_of(&mut *conn, clinic, &ids).await?;
    Frontier::from_nodes(size, ids.iter().map(|id| nodes[id]).collect())
        .ok_or(ServerError::Internal("log frontier malformed"))
}

/// Appends events (id, hash) as the next leaves of the clinic's log; returns the grown
/// frontier. Must run inside the transaction that stores the events.
pub async fn append(
    conn: &mut AnyConnection,
    clinic: Uuid,
    events: &[(Uuid, Hash32)],
) -> Result<Frontier, ServerError> {
    let mut tree = frontier(&mut *conn, clinic).await?;
    let mut script = Script::default();
    script.extend(grow(&mut tree, clinic, events)?);
    script.execute(conn).await?;
    Ok(tree)
}

/// Grows `tree` by events (id, hash) in memory and answers the statements that store the
/// new leaves and nodes, a hundred rows per statement. If `tree` is not the stored log's
/// frontier, they fail on its keys (a leaf's index is taken) rather than store a fork.
pub(crate) fn grow(
    tree: &mut Frontier,
    clinic: Uuid,
    events: &[(Uuid, Hash32)],
) -> Result<Vec<Statement>, ServerError> {
    let clinic_s = clinic.to_string();
    let mut leaves = Vec::with_capacity(events.len());
    let mut nodes = Vec::with_capacity(events.len() * 2);
    for (event_id, event_hash) in events {
        leaves.push(vec![
            Value::from(clinic_s.as_str()),
            Value::Int(to_i64(tree.size())?),
            Value::Text(event_id.to_string()),
        ]);
        for (id, hash) in tree.push(event_hash) {
            nodes.push(vec![
                Value::from(clinic_s.as_str()),
                Value::Int(i64::from(id.level)),
                Value::Int(to_i64(id.index)?),
                Value::Blob(hash.0.to_vec()),
            ]);
        }
    }
    Ok(insert_rows(
        "INSERT INTO audit_leaves (clinic_id, leaf_index, event_id) VALUES ",
        "",
        leaves,
    )
    .into_iter()
    .chain(insert_rows(
        "INSERT INTO audit_nodes (clinic_id, level, idx, hash) VALUES ",
        "",
        nodes,
    ))
    .collect())
}

fn checkpoint_of(row: &sqlx::any::AnyRow, clinic: Uuid) -> Result<SignedCheckpoint, ServerError> {
    Ok(SignedCheckpoint {
        checkpoint: Checkpoint {
            clinic_id: clinic,
            tree_size: to_u64(row.get(0))?,
            root_hash: Hash32::from_hex(&row.get::<String, _>(1))
                .ok_or(ServerError::Internal("stored root malformed"))?,
            issued_at_ms: row.get(2),
        },
        signature: row.get(3),
    })
}

/// The checkpoint of exactly `tree_size`, if one was issued.
pub async fn checkpoint_at(
    conn: &mut AnyConnection,
    clinic: Uuid,
    tree_size: u64,
) -> Result<Option<SignedCheckpoint>, ServerError> {
    let row = sqlx::query(
        "SELECT tree_size, root_hash, issued_at_ms, signature FROM audit_checkpoints
         WHERE clinic_id = $1 AND tree_size = $2",
    )
    .bind(clinic.to_string())
    .bind(to_i64(tree_size)?)
    .fetch_optional(conn)
    .await?;
    row.map(|r| checkpoint_of(&r, clinic)).transpose()
}

/// The newest checkpoint of the clinic, if any.
pub async fn latest_checkpoint(
    conn: &mut AnyConnection,
    clinic: Uuid,
) -> Result<Option<SignedCheckpoint>, ServerError> {
    let row = sqlx::query(
        "SELECT tree_size, root_hash, issued_at_ms, signature FROM audit_checkpoints
         WHERE clinic_id = $1 ORDER BY tree_size DESC LIMIT 1",
    )
    .bind(clinic.to_string())
    .fetch_optional(conn)
    .await?;
    row.map(|r| checkpoint_of(&r, clinic)).transpose()
}

/// Signs and stores a checkpoint of the tree as it stands, unless one of that size exists
/// (then that one is the answer: one statement per size keeps them trivially consistent).
pub async fn checkpoint(
    conn: &mut AnyConnection,
    key: &AuditKey,
    clinic: Uuid,
    tree: &Frontier,
    now_ms: i64,
) -> Result<SignedCheckpoint, ServerError> {
    if let Some(existing) = checkpoint_at(&mut *conn, clinic, tree.size()).await? {
        return Ok(existing);
    }
    // Issue times never go backwards along the log, even if the clock does.
    let after = latest_checkpoint(&mut *conn, clinic)
        .await?
        .map_or(i64::MIN, |c| c.checkpoint.issued_at_ms);
    let checkpoint = Checkpoint {
        clinic_id: clinic,
        tree_size: tree.size(),
        root_hash: tree.root(),
        issued_at_ms: now_ms.max(after),
    };
    let signature = key.sign_hex(&checkpoint.canonical_bytes());
    sqlx::query(
        "INSERT INTO audit_checkpoints (clinic_id, tree_size, root_hash, issued_at_ms, signature)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(clinic.to_string())
    .bind(to_i64(checkpoint.tree_size)?)
    .bind(checkpoint.root_hash.to_hex())
    .bind(checkpoint.issued_at_ms)
    .bind(&signature)
    .execute(conn)
    .await?;
    Ok(SignedCheckpoint {
        checkpoint,
        signature,
    })
}

/// The leaf index of a stored event of the clinic.
pub async fn leaf_of(
    conn: &mut AnyConnection,
    clinic: Uuid,
    event_id: Uuid,
) -> Result<Option<u64>, ServerError> {
    let row =
        sqlx::query("SELECT leaf_index FROM audit_leaves WHERE clinic_id = $1 AND event_id = $2")
            .bind(clinic.to_string())
            .bind(event_id.to_string())
            .fetch_optional(conn)
            .await?;
    row.map(|r| to_u64(r.get(0))).transpose()
}

async fn prove(
    conn: &mut AnyConnection,
    clinic: Uuid,
    plan: &ProofPlan,
) -> Result<Vec<Hash32>, ServerError> {
    let nodes = nodes_of(conn, clinic, &plan_nodes(plan)).await?;
    assemble(plan, |id| nodes.get(&id).copied()).ok_or(ServerError::Internal("log node missing"))
}

/// Proof that leaf `leaf_index` is in the clinic's tree of `tree_size` leaves.
pub async fn inclusion(
    conn: &mut AnyConnection,
    clinic: Uuid,
    leaf_index: u64,
    tree_size: u64,
) -> Result<InclusionEvidence, ServerError> {
    let plan = inclusion_plan(tree_size, leaf_index)
        .map_err(|_| ServerError::BadRequest { field: "tree_size" })?;
    Ok(InclusionEvidence {
        leaf_index,
        tree_size,
        hashes: prove(conn, clinic, &plan).await?,
    })
}

/// Proof that the clinic's tree of `old_size` is a prefix of the one of `new_size`.
pub async fn consistency(
    conn: &mut AnyConnection,
    clinic: Uuid,
    old_size: u64,
    new_size: u64,
) -> Result<ConsistencyEvidence, ServerError> {
    let hashes = if old_size == new_size {
        Vec::new()
    } else {
        let plan = consistency_plan(old_size, new_size)
            .map_err(|_| ServerError::BadRequest { field: "old_size" })?;
        prove(conn, clinic, &plan).await?
    };
    Ok(ConsistencyEvidence {
        old_size,
        new_size,
        hashes,
    })
}

/// Puts events stored before the log existed (data directories older than the log) into
/// their clinic's log, in the order they were stored, and signs a checkpoint. Runs at
/// start, and only for clinics whose log is still empty: an event slipped into the table
/// of a clinic that has a log is never adopted, and `audit verify` names it.
pub async fn adopt_unlogged(
    pool: &sqlx::AnyPool,
    key: &AuditKey,
    now_ms: i64,
) -> Result<u64, ServerError> {
    let rows = sqlx::query(
        "SELECT e.clinic_id, e.id, e.hash, e.device_id FROM audit_events e
         WHERE NOT EXISTS (SELECT 1 FROM audit_leaves l WHERE l.clinic_id = e.clinic_id)
         ORDER BY e.received_at_ms, e.id",
    )
    .fetch_all(pool)
    .await?;
    /// Per clinic: its unlogged events (id, hash) and the devices that signed them.
    type Unlogged = (Vec<(Uuid, Hash32)>, Vec<Uuid>);
    let mut by_clinic: std::collections::BTreeMap<Uuid, Unlogged> =
        std::collections::BTreeMap::new();
    let id = |s: &str| Uuid::parse_str(s).map_err(|_| ServerError::Internal("stored id malformed"));
    for row in &rows {
        let entry = by_clinic.entry(id(row.get::<&str, _>(0))?).or_default();
        let hash = Hash32::from_hex(row.get::<&str, _>(2))
            .ok_or(ServerError::Internal("stored hash malformed"))?;
        entry.0.push((id(row.get::<&str, _>(1))?, hash));
        entry.1.push(id(row.get::<&str, _>(3))?);
    }
    for (clinic, (events, mut devices)) in by_clinic {
        let mut tx = pool.begin().await?;
        lock_clinic(&mut tx, clinic).await?;
        let tree = append(&mut tx, clinic, &events).await?;
        devices.sort_unstable();
        devices.dedup();
        let scope = crate::auth::ClinicScope::provisioning(clinic);
        for device in devices {
            super::ingest::advance_head(&mut tx, &scope, device).await?;
        }
        checkpoint(&mut tx, key, clinic, &tree, now_ms).await?;
        tx.commit().await?;
        tracing::info!(%clinic, events = events.len(), "existing audit events added to the log");
    }
    Ok(u64::try_from(rows.len()).unwrap_or(u64::MAX))
}

/// Signs a checkpoint of the clinic's log as it stands, in its own transaction (or returns
/// the one of that size).
pub async fn checkpoint_now(
    pool: &sqlx::AnyPool,
    key: &AuditKey,
    clinic: Uuid,
    now_ms: i64,
) -> Result<SignedCheckpoint, ServerError> {
    let mut tx = pool.begin().await?;
    lock_clinic(&mut tx, clinic).await?;
    let tree = frontier(&mut tx, clinic).await?;
    let signed = checkpoint(&mut tx, key, clinic, &tree, now_ms).await?;
    tx.commit().await?;
    Ok(signed)
}

/// Signs a checkpoint for every clinic whose log grew since its newest one: the server's
/// regular publication, so events recorded between uploads (the server's own) are covered
/// by a signed tree head within one interval. Returns how many it signed.
pub async fn checkpoint_grown(
    pool: &sqlx::AnyPool,
    key: &AuditKey,
    now_ms: i64,
) -> Result<usize, ServerError> {
    let clinics: Vec<String> = sqlx::query_scalar("SELECT id FROM clinics")
        .fetch_all(pool)
        .await?;
    let mut signed = 0;
    for clinic in &clinics {
        let clinic =
            Uuid::parse_str(clinic).map_err(|_| ServerError::Internal("stored id malformed"))?;
        let mut conn = pool.acquire().await?;
        let size = tree_size(&mut conn, clinic).await?;
        let published = latest_checkpoint(&mut conn, clinic)
            .await?
            .map_or(0, |c| c.checkpoint.tree_size);
        drop(conn);
        if size <= published {
            continue;
        }
        checkpoint_now(pool, key, clinic, now_ms).await?;
        signed += 1;
    }
    Ok(signed)
}
