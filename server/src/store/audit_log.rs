//! The clinics' Merkle logs as stored: `audit_nodes` (perfect subtrees of the tree),
//! `audit_checkpoints` (signed tree heads), and each event's place in its clinic's log
//! (`audit_events.leaf_index`). The tree math, and what to store when, is `crate::audit::log`'s.

use std::collections::HashMap;

use clinicdesk_protocol::audit::Hash32;
use clinicdesk_protocol::merkle::{Checkpoint, NodeId, SignedCheckpoint};

use super::sql::{Statement, Value, insert_rows};
use super::*;

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

/// A clinic's or chain's id as stored.
pub(super) fn stored_id(s: &str) -> Result<Uuid, ServerError> {
    Uuid::parse_str(s).map_err(|_| ServerError::Internal("stored id malformed"))
}

/// Stored nodes by id, and event hashes by leaf index ([`Store::log_nodes`]).
pub type LogNodes = (HashMap<NodeId, Hash32>, HashMap<u64, Hash32>);

/// The `audit_nodes` rows of subtrees a log's growth completed, to store with its events.
pub struct NodeRows {
    clinic: String,
    rows: Vec<Vec<Value>>,
}

impl NodeRows {
    pub(crate) fn new(clinic: Uuid) -> Self {
        Self {
            clinic: clinic.to_string(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, id: NodeId, hash: &Hash32) -> Result<(), ServerError> {
        self.rows.push(vec![
            Value::from(self.clinic.as_str()),
            Value::Int(i64::from(id.level)),
            Value::Int(to_i64(id.index)?),
            Value::Blob(hash.0.to_vec()),
        ]);
        Ok(())
    }

    /// The statements that store the rows, a hundred each.
    pub(crate) fn into_statements(self) -> Vec<Statement> {
        insert_rows(
            "INSERT INTO audit_nodes (clinic_id, level, idx, hash) VALUES ",
            "",
            self.rows,
        )
    }
}

impl Store {
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

    /// The stored nodes `stored` (all of them, or an error) and the event hashes of the
    /// leaves in each span `[start, end)`: at most one statement for each.
    pub async fn log_nodes(
        conn: &mut AnyConnection,
        clinic: Uuid,
        stored: &[NodeId],
        spans: &[(u64, u64)],
    ) -> Result<LogNodes, ServerError> {
        let nodes = stored_nodes(&mut *conn, clinic, stored).await?;
        let events = event_hashes(conn, clinic, spans).await?;
        Ok((nodes, events))
    }

    /// [`Store::log_nodes`] on a connection of its own, outside the caller's transaction:
    /// for a tree size whose events are committed, which never changes. On PostgreSQL in a
    /// transaction that names the scope's clinic (the rows are behind the wall); SQLite has
    /// no wall, and a bare connection saves beginning and ending one on the upload path.
    pub async fn log_nodes_alone(
        &self,
        scope: &ClinicScope,
        stored: &[NodeId],
        spans: &[(u64, u64)],
    ) -> Result<LogNodes, ServerError> {
        let clinic = scope.clinic_id();
        match self.backend {
            Backend::Sqlite => {
                let mut conn = self.pool.acquire().await?;
                Self::log_nodes(&mut conn, clinic, stored, spans).await
            }
            Backend::Postgres => {
                let mut tx = self.clinic_tx(scope).await?;
                let nodes = Self::log_nodes(&mut tx, clinic, stored, spans).await?;
                tx.commit().await?;
                Ok(nodes)
            }
        }
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

    /// The size of the scope's clinic's log and its newest checkpoint, read in one
    /// transaction.
    pub async fn log_progress(
        &self,
        scope: &ClinicScope,
    ) -> Result<(u64, Option<SignedCheckpoint>), ServerError> {
        let clinic = scope.clinic_id();
        let mut tx = self.clinic_tx(scope).await?;
        let size = Self::tree_size(&mut tx, clinic).await?;
        let latest = Self::latest_checkpoint(&mut tx, clinic).await?;
        tx.commit().await?;
        Ok((size, latest))
    }

    /// The statement that stores a checkpoint.
    pub(crate) fn checkpoint_insert(signed: &SignedCheckpoint) -> Result<Statement, ServerError> {
        let checkpoint = &signed.checkpoint;
        let mut insert = Statement::new(
            "INSERT INTO audit_checkpoints (clinic_id, tree_size, root_hash, issued_at_ms, signature)
         VALUES (",
        );
        insert
            .bind(checkpoint.clinic_id.to_string())
            .push(", ")
            .bind(to_i64(checkpoint.tree_size)?)
            .push(", ")
            .bind(checkpoint.root_hash.to_hex())
            .push(", ")
            .bind(checkpoint.issued_at_ms)
            .push(", ")
            .bind(signed.signature.as_str())
            .push(")");
        Ok(insert)
    }

    /// Stores a checkpoint in the caller's transaction.
    pub async fn add_checkpoint(
        conn: &mut AnyConnection,
        signed: &SignedCheckpoint,
    ) -> Result<(), ServerError> {
        Self::checkpoint_insert(signed)?
            .query()
            .execute(conn)
            .await?;
        Ok(())
    }

    /// The leaf index of a stored event of the clinic.
    pub async fn leaf_of(
        conn: &mut AnyConnection,
        clinic: Uuid,
        event_id: Uuid,
    ) -> Result<Option<u64>, ServerError> {
        let leaf: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT leaf_index FROM audit_events WHERE id = $1 AND clinic_id = $2",
        )
        .bind(event_id.to_string())
        .bind(clinic.to_string())
        .fetch_optional(conn)
        .await?;
        leaf.flatten().map(to_u64).transpose()
    }

    /// Whether the scope's clinic has events but no log: they were stored before the log
    /// existed. Two seeks in the leaf index, where unplaced events sort first.
    pub async fn unlogged(&self, scope: &ClinicScope) -> Result<bool, ServerError> {
        let mut tx = self.clinic_tx(scope).await?;
        let (unplaced, placed): (i64, i64) = sqlx::query_as(
            "SELECT
               (SELECT count(*) FROM (SELECT 1 FROM audit_events
                                      WHERE clinic_id = $1 AND leaf_index IS NULL LIMIT 1) u),
               (SELECT count(*) FROM (SELECT 1 FROM audit_events
                                      WHERE clinic_id = $1 AND leaf_index IS NOT NULL LIMIT 1) p)",
        )
        .bind(scope.clinic_id().to_string())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(unplaced > 0 && placed == 0)
    }

    /// Every event of a clinic whose log is empty, as (id, hash), in the order stored.
    pub async fn unlogged_events(
        conn: &mut AnyConnection,
        clinic: Uuid,
    ) -> Result<Vec<(String, Hash32)>, ServerError> {
        let rows = sqlx::query(
            "SELECT id, hash FROM audit_events WHERE clinic_id = $1
             ORDER BY received_at_ms, id",
        )
        .bind(clinic.to_string())
        .fetch_all(conn)
        .await?;
        rows.iter()
            .map(|row| {
                let hash = Hash32::from_hex(row.get::<&str, _>(1))
                    .ok_or(ServerError::Internal("stored hash malformed"))?;
                Ok((row.get::<String, _>(0), hash))
            })
            .collect()
    }

    /// The statement that puts the stored event `event_id` at leaf `leaf` of its log.
    pub(crate) fn leaf_placement(leaf: i64, event_id: String) -> Statement {
        let mut place = Statement::new("UPDATE audit_events SET leaf_index = ");
        place.bind(leaf).push(" WHERE id = ").bind(event_id);
        place
    }

    /// Every clinic's id: each has a log, empty or not.
    pub async fn log_clinics(&self) -> Result<Vec<Uuid>, ServerError> {
        let clinics: Vec<String> = sqlx::query_scalar("SELECT id FROM clinics")
            .fetch_all(&self.pool)
            .await?;
        clinics.iter().map(|c| stored_id(c)).collect()
    }
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

fn checkpoint_of(row: &AnyRow, clinic: Uuid) -> Result<SignedCheckpoint, ServerError> {
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
