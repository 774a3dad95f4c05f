//! The reads of `clinicdesk-server audit verify` (`crate::audit::verify`), which walks every
//! clinic's trail as an operator's command: clinic by clinic, each in transactions scoped
//! by the console (the trail is behind each clinic's wall on PostgreSQL).
//!
//! A clinic's logged events, its device chains and its stored log nodes are streamed (the
//! trail runs to millions of rows, never all in memory); the verifier reads the events and
//! the nodes side by side, each stream in a transaction of its own. Rows come back as their
//! columns hold them, and a column that cannot be read as its type comes back as `None`
//! rather than failing the walk: telling a malformed value from tampering, and in which
//! order, is the verifier's job.

use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::*;

/// A device's key row, as stored.
#[derive(Debug, Clone)]
pub struct StoredDeviceKey {
    pub id: String,
    pub public_key: String,
    /// `server` for the clinic's server chain.
    pub kind: String,
}

/// A checkpoint row, as stored.
#[derive(Debug, Clone)]
pub struct StoredCheckpoint {
    pub tree_size: i64,
    pub root_hash: String,
    pub issued_at_ms: i64,
    pub signature: String,
}

/// A logged event's row, as stored; `None` where a column cannot be read as its type.
/// Beside the signed event (`event_json`), the row holds columns derived from it that
/// searches and reports select on; the verifier checks each against the event.
#[derive(Debug, Clone)]
pub struct LoggedEventRow {
    pub leaf_index: Option<i64>,
    pub id: Option<String>,
    pub device_id: Option<String>,
    pub device_seq: Option<i64>,
    pub actor_user_id: Option<String>,
    /// `Some(None)`: the column is NULL (an event about no patient).
    pub patient_id: Option<Option<String>>,
    pub action: Option<String>,
    pub occurred_at_ms: Option<i64>,
    pub event_json: Option<String>,
    pub hash: Option<String>,
    pub signature: Option<String>,
}

/// A stored log node (a perfect subtree), as stored.
#[derive(Debug, Clone)]
pub struct NodeRow {
    pub level: i64,
    pub index: i64,
    pub hash: Vec<u8>,
}

/// An event's row in its device chain, as stored; `None` where a column cannot be read as
/// its type (`leaf_index` is also `None` for an event not in the log).
#[derive(Debug, Clone)]
pub struct ChainEventRow {
    pub device_id: Option<String>,
    pub device_seq: Option<i64>,
    pub event_json: Option<String>,
    pub hash: Option<String>,
    pub leaf_index: Option<i64>,
}

/// A tamper alert's row, as stored.
#[derive(Debug, Clone)]
pub struct AlertRow {
    pub device_id: String,
    pub device_seq: i64,
    pub kind: String,
    pub hash: String,
    pub event_json: String,
    pub signature: String,
    pub logged_event_id: Option<String>,
}

impl Store {
    /// Every clinic's id, in order.
    pub async fn clinics_to_verify(&self) -> Result<Vec<String>, ServerError> {
        Ok(sqlx::query_scalar("SELECT id FROM clinics ORDER BY id")
            .fetch_all(&self.pool)
            .await?)
    }
}

/// How many tamper alerts the clinic has stored.
pub async fn alert_count(tx: &mut ClinicTx) -> Result<i64, ServerError> {
    let clinic = tx.clinic_id().to_string();
    Ok(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM audit_alerts WHERE clinic_id = $1")
            .bind(clinic)
            .fetch_one(&mut **tx)
            .await?,
    )
}

/// The clinic's devices' keys.
pub async fn device_keys_as_stored(tx: &mut ClinicTx) -> Result<Vec<StoredDeviceKey>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let rows = sqlx::query("SELECT id, public_key, kind FROM devices WHERE clinic_id = $1")
        .bind(clinic)
        .fetch_all(&mut **tx)
        .await?;
    Ok(rows
        .iter()
        .map(|row| StoredDeviceKey {
            id: row.get(0),
            public_key: row.get(1),
            kind: row.get(2),
        })
        .collect())
}

/// The clinic's checkpoints, smallest first.
pub async fn checkpoints_as_stored(
    tx: &mut ClinicTx,
) -> Result<Vec<StoredCheckpoint>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let rows = sqlx::query(
        "SELECT tree_size, root_hash, issued_at_ms, signature FROM audit_checkpoints
         WHERE clinic_id = $1 ORDER BY tree_size",
    )
    .bind(clinic)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .iter()
        .map(|r| StoredCheckpoint {
            tree_size: r.get(0),
            root_hash: r.get(1),
            issued_at_ms: r.get(2),
            signature: r.get(3),
        })
        .collect())
}

/// The clinic's logged events in log order, streamed.
pub fn logged_events(tx: &mut ClinicTx) -> BoxStream<'_, Result<LoggedEventRow, ServerError>> {
    let clinic = tx.clinic_id().to_string();
    sqlx::query(
        "SELECT leaf_index, id, device_id, device_seq, actor_user_id, patient_id, action,
                occurred_at_ms, event_json, hash, signature
         FROM audit_events WHERE clinic_id = $1 AND leaf_index IS NOT NULL ORDER BY leaf_index",
    )
    .bind(clinic)
    .fetch(&mut **tx)
    .map(|row| {
        let row = row?;
        Ok(LoggedEventRow {
            leaf_index: row.try_get(0).ok(),
            id: row.try_get(1).ok(),
            device_id: row.try_get(2).ok(),
            device_seq: row.try_get(3).ok(),
            actor_user_id: row.try_get(4).ok(),
            patient_id: row.try_get(5).ok(),
            action: row.try_get(6).ok(),
            occurred_at_ms: row.try_get(7).ok(),
            event_json: row.try_get(8).ok(),
            hash: row.try_get(9).ok(),
            signature: row.try_get(10).ok(),
        })
    })
    .boxed()
}

/// The clinic's stored log nodes in the order a walk of the log completes them: by the
/// leaf that completes each, then upwards. Streamed.
pub fn log_nodes_in_walk_order(tx: &mut ClinicTx) -> BoxStream<'_, Result<NodeRow, ServerError>> {
    let clinic = tx.clinic_id().to_string();
    sqlx::query(
        "SELECT level, idx, hash FROM audit_nodes WHERE clinic_id = $1
         ORDER BY (idx + 1) << CAST(level AS INTEGER), level",
    )
    .bind(clinic)
    .fetch(&mut **tx)
    .map(|row| {
        let row = row?;
        Ok(NodeRow {
            level: row.get(0),
            index: row.get(1),
            hash: row.get(2),
        })
    })
    .boxed()
}

/// The id of one of the clinic's events that is not in its log, if any.
pub async fn first_unlogged_event(tx: &mut ClinicTx) -> Result<Option<String>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    Ok(sqlx::query_scalar(
        "SELECT id FROM audit_events WHERE clinic_id = $1 AND leaf_index IS NULL LIMIT 1",
    )
    .bind(clinic)
    .fetch_optional(&mut **tx)
    .await?)
}

/// The clinic's tamper alerts, in the order they were raised.
pub async fn alerts_as_stored(tx: &mut ClinicTx) -> Result<Vec<AlertRow>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let rows = sqlx::query(
        "SELECT device_id, device_seq, kind, hash, event_json, signature, logged_event_id
         FROM audit_alerts WHERE clinic_id = $1 ORDER BY id",
    )
    .bind(clinic)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .iter()
        .map(|row| AlertRow {
            device_id: row.get(0),
            device_seq: row.get(1),
            kind: row.get(2),
            hash: row.get(3),
            event_json: row.get(4),
            signature: row.get(5),
            logged_event_id: row.get(6),
        })
        .collect())
}

/// Every event of the clinic, logged or not, chain by chain in sequence order. Streamed.
pub fn chain_events(tx: &mut ClinicTx) -> BoxStream<'_, Result<ChainEventRow, ServerError>> {
    let clinic = tx.clinic_id().to_string();
    sqlx::query(
        "SELECT device_id, device_seq, event_json, hash, leaf_index FROM audit_events
         WHERE clinic_id = $1 ORDER BY device_id, device_seq",
    )
    .bind(clinic)
    .fetch(&mut **tx)
    .map(|row| {
        let row = row?;
        Ok(ChainEventRow {
            device_id: row.try_get(0).ok(),
            device_seq: row.try_get(1).ok(),
            event_json: row.try_get(2).ok(),
            hash: row.try_get(3).ok(),
            leaf_index: row.try_get(4).ok().flatten(),
        })
    })
    .boxed()
}
