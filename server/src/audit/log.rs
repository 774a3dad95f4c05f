//! The clinic's Merkle log in the database: appending leaves inside the ingest
//! transaction, issuing signed checkpoints, and serving inclusion and consistency proofs.
//! The tree math is `clinicdesk_protocol::merkle`; this module only stores and fetches.

use std::collections::HashMap;

use clinicdesk_protocol::audit::Hash32;
use clinicdesk_protocol::merkle::{
    Checkpoint, ConsistencyEvidence, Frontier, InclusionEvidence, NodeId, ProofPlan,
    SignedCheckpoint, assemble, consistency_plan, inclusion_plan, plan_nodes,
};
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::key::AuditKey;
use crate::error::ServerError;
use crate::store::sql::{Script, Statement, Value, insert_rows};

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

pub use crate::store::clinics::lock_clinic;

/// Perfect subtrees below this level (under 16 leaves) are not stored: each is computed
/// from at most eight event hashes when a proof or a frontier needs it. Storing them cost
/// every event about two node rows; storing the rest costs one row per eight events.
pub(crate) const LOWEST_STORED_LEVEL: u32 = 4;

/// How many leaves the clinic's log holds.
pub async fn tree_size(conn: &mut AnyConnection, clinic: Uuid) -> Result<u64, ServerError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT coalesce(max(leaf_index) + 1, 0) FROM audit_events WHERE clinic_id = $1",
    )
    .bind(clinic.to_string())
    .fetch_one(conn)
    .await?;
    to_u64(n)
}

/// The hashes of perfect subtrees of the clinic's log, stored or computed.
async fn nodes_of(
    conn: &mut AnyConnection,
    clinic: Uuid,
    ids: &[NodeId],
) -> Result<HashMap<NodeId, Hash32>, ServerError> {
    let (stored, computed): (Vec<NodeId>, Vec<NodeId>) =
        ids.iter().partition(|id| id.level >= LOWEST_STORED_LEVEL);
    let mut out = stored_nodes(&mut *conn, clinic, &stored).await?;
    let spans: Vec<(u64, u64)> = computed
        .iter()
        .map(|id| (id.index << id.level, (id.index + 1) << id.level))
        .collect();
    let events = event_hashes(conn, clinic, &spans).await?;
    for (id, (start, end)) in computed.into_iter().zip(spans) {
        let mut subtree = Frontier::default();
        for leaf in start..end {
            subtree.push(
                events
                    .get(&leaf)
                    .ok_or(ServerError::Internal("log leaf missing"))?,
            );
        }
        // A perfect subtree's root is its node hash.
        out.insert(id, subtree.root());
    }
    Ok(out)
}

async fn stored_nodes(
    conn: &mut AnyConnection,
    clinic: Uuid,
    ids: &[NodeId],
) -> Result<HashMap<NodeId, Hash32>, ServerError> {
    let mut out = HashMap::with_capacity(ids.len());
    if ids.is_empty() {
        return Ok(out);
    }
    // One statement for all of them (a frontier or proof needs up to ~2 log2 n nodes).
    let mut st = Statement::new("SELECT level, idx, hash FROM audit_nodes WHERE clinic_id = ");
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

/// The event hashes of the leaves in each span `[start, end)`, by leaf index: one range
/// scan of the leaf index per span, in one statement.
async fn event_hashes(
    conn: &mut AnyConnection,
    clinic: Uuid,
    spans: &[(u64, u64)],
) -> Result<HashMap<u64, Hash32>, ServerError> {
    let mut spans = spans.to_vec();
    spans.sort_unstable();
    spans.dedup();
    let mut out = HashMap::new();
    if spans.is_empty() {
        return Ok(out);
    }
    let mut st = Statement::new("");
    for (i, (start, end)) in spans.iter().enumerate() {
        if i > 0 {
            st.push(" UNION ALL ");
        }
        st.push("SELECT leaf_index, hash FROM audit_events WHERE clinic_id = ")
            .bind(clinic.to_string())
            .push(" AND leaf_index >= ")
            .bind(to_i64(*start)?)
            .push(" AND leaf_index < ")
            .bind(to_i64(*end)?);
    }
    for row in st.query().fetch_all(conn).await? {
        let hash = Hash32::from_hex(row.get::<&str, _>(1))
            .ok_or(ServerError::Internal("stored hash malformed"))?;
        out.insert(to_u64(row.get(0))?, hash);
    }
    Ok(out)
}

/// The right edge of the clinic's tree as stored.
pub async fn frontier(conn: &mut AnyConnection, clinic: Uuid) -> Result<Frontier, ServerError> {
    let size = tree_size(&mut *conn, clinic).await?;
    frontier_at(conn, clinic, size).await
}

/// The right edge of the clinic's tree of `size` leaves.
pub(crate) async fn frontier_at(
    conn: &mut AnyConnection,
    clinic: Uuid,
    size: u64,
) -> Result<Frontier, ServerError> {
    let ids = Frontier::ids(size);
    let nodes = nodes_of(&mut *conn, clinic, &ids).await?;
    Frontier::from_nodes(size, ids.iter().map(|id| nodes[id]).collect())
        .ok_or(ServerError::Internal("log frontier malformed"))
}

/// Events appended to a clinic's log in memory, and the stored nodes they complete. Each
/// event's leaf index goes into its row (`audit_events.leaf_index`), which is unique per
/// clinic: if the tree was not the stored log's frontier, storing fails on that key
/// rather than storing a fork.
pub(crate) struct Growth<'a> {
    tree: &'a mut Frontier,
    clinic: String,
    nodes: Vec<Vec<Value>>,
}

impl<'a> Growth<'a> {
    pub(crate) fn new(tree: &'a mut Frontier, clinic: Uuid) -> Self {
        Self {
            tree,
            clinic: clinic.to_string(),
            nodes: Vec::new(),
        }
    }

    /// Appends the event with this hash as the next leaf; answers its leaf index.
    pub(crate) fn push(&mut self, event_hash: &Hash32) -> Result<i64, ServerError> {
        let leaf = to_i64(self.tree.size())?;
        for (id, hash) in self.tree.push(event_hash) {
            if id.level >= LOWEST_STORED_LEVEL {
                self.nodes.push(vec![
                    Value::from(self.clinic.as_str()),
                    Value::Int(i64::from(id.level)),
                    Value::Int(to_i64(id.index)?),
                    Value::Blob(hash.0.to_vec()),
                ]);
            }
        }
        Ok(leaf)
    }

    /// The statements that store the completed nodes, a hundred rows each.
    pub(crate) fn into_statements(self) -> Vec<Statement> {
        insert_rows(
            "INSERT INTO audit_nodes (clinic_id, level, idx, hash) VALUES ",
            "",
            self.nodes,
        )
    }
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
    let latest = latest_checkpoint(&mut *conn, clinic).await?;
    let (signed, insert) = sign_checkpoint(key, clinic, tree, now_ms, latest)?;
    if let Some(insert) = insert {
        insert.query().execute(conn).await?;
    }
    Ok(signed)
}

/// The checkpoint of `tree`, the clinic's log as stored, given `latest`, its newest
/// checkpoint read in the same transaction: that one if it is of this size (no checkpoint
/// is ever of a larger one), else a new one signed now, with the statement that stores it.
/// Issue times never go backwards along the log, even if the clock does.
pub(crate) fn sign_checkpoint(
    key: &AuditKey,
    clinic: Uuid,
    tree: &Frontier,
    now_ms: i64,
    latest: Option<SignedCheckpoint>,
) -> Result<(SignedCheckpoint, Option<Statement>), ServerError> {
    let after = match latest {
        Some(latest) if latest.checkpoint.tree_size == tree.size() => return Ok((latest, None)),
        Some(latest) => latest.checkpoint.issued_at_ms,
        None => i64::MIN,
    };
    let checkpoint = Checkpoint {
        clinic_id: clinic,
        tree_size: tree.size(),
        root_hash: tree.root(),
        issued_at_ms: now_ms.max(after),
    };
    let signature = key.sign_hex(&checkpoint.canonical_bytes());
    let mut insert = Statement::new(
        "INSERT INTO audit_checkpoints (clinic_id, tree_size, root_hash, issued_at_ms, signature)
         VALUES (",
    );
    insert
        .bind(clinic.to_string())
        .push(", ")
        .bind(to_i64(checkpoint.tree_size)?)
        .push(", ")
        .bind(checkpoint.root_hash.to_hex())
        .push(", ")
        .bind(checkpoint.issued_at_ms)
        .push(", ")
        .bind(signature.as_str())
        .push(")");
    Ok((
        SignedCheckpoint {
            checkpoint,
            signature,
        },
        Some(insert),
    ))
}

/// The leaf index of a stored event of the clinic.
pub async fn leaf_of(
    conn: &mut AnyConnection,
    clinic: Uuid,
    event_id: Uuid,
) -> Result<Option<u64>, ServerError> {
    let leaf: Option<Option<i64>> =
        sqlx::query_scalar("SELECT leaf_index FROM audit_events WHERE id = $1 AND clinic_id = $2")
            .bind(event_id.to_string())
            .bind(clinic.to_string())
            .fetch_optional(conn)
            .await?;
    leaf.flatten().map(to_u64).transpose()
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
    // Per clinic, two seeks in the leaf index, where unplaced events sort first.
    let clinics: Vec<String> = sqlx::query_scalar(
        "SELECT c.id FROM clinics c
         WHERE EXISTS (SELECT 1 FROM audit_events e WHERE e.clinic_id = c.id AND e.leaf_index IS NULL)
           AND NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.clinic_id = c.id AND e.leaf_index IS NOT NULL)",
    )
    .fetch_all(pool)
    .await?;
    let id = |s: &str| Uuid::parse_str(s).map_err(|_| ServerError::Internal("stored id malformed"));
    let mut adopted = 0u64;
    for clinic in clinics {
        let clinic = id(&clinic)?;
        let mut tx = pool.begin().await?;
        lock_clinic(&mut tx, clinic).await?;
        let rows = sqlx::query(
            "SELECT id, hash FROM audit_events WHERE clinic_id = $1
             ORDER BY received_at_ms, id",
        )
        .bind(clinic.to_string())
        .fetch_all(&mut *tx)
        .await?;
        let mut tree = Frontier::default();
        let mut growth = Growth::new(&mut tree, clinic);
        let mut script = Script::default();
        for row in &rows {
            let hash = Hash32::from_hex(row.get::<&str, _>(1))
                .ok_or(ServerError::Internal("stored hash malformed"))?;
            let mut place = Statement::new("UPDATE audit_events SET leaf_index = ");
            place
                .bind(growth.push(&hash)?)
                .push(" WHERE id = ")
                .bind(row.get::<&str, _>(0));
            script.push(place);
        }
        script.extend(growth.into_statements());
        script.execute(&mut tx).await?;
        // Workstations' upload progress; the server chain's tip is its last event.
        let workstations: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM devices WHERE clinic_id = $1 AND kind = 'workstation'",
        )
        .bind(clinic.to_string())
        .fetch_all(&mut *tx)
        .await?;
        let scope =
            crate::scope::ClinicScope::of_console(&crate::scope::Console::operator(), clinic);
        for device in workstations {
            super::ingest::advance_head(&mut tx, &scope, id(&device)?).await?;
        }
        checkpoint(&mut tx, key, clinic, &tree, now_ms).await?;
        tx.commit().await?;
        adopted += u64::try_from(rows.len()).unwrap_or(u64::MAX);
        tracing::info!(%clinic, events = rows.len(), "existing audit events added to the log");
    }
    Ok(adopted)
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
