//! Ingest of device-signed audit events (`POST /v1/audit/batches`), shared by the route and
//! the seeder. The batch is authenticated by its signatures alone (so a locked app keeps
//! uploading), then in one transaction each event is stored once, appended to the clinic's
//! Merkle log and a checkpoint is signed; the answer is a signed receipt.
//!
//! - A re-sent event (same sequence, same hash) is accepted once.
//! - A different event at a stored sequence, or one whose link contradicts a stored
//!   neighbour, is kept in `audit_alerts` and named in the receipt, never stored as chain.
//! - Events past a gap are stored; the gap is reported as outstanding until it is filled,
//!   and the link across it is checked when the missing event arrives.

use std::collections::{HashMap, HashSet};

use clinicdesk_protocol::audit::{
    AuditAction, AuditEvent, Hash32, Outcome, RequestSeen, SignedAuditEvent,
};
use clinicdesk_protocol::wire::{AuditReceipt, AuditUpload};
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::log;
use super::server_chain::{self, ServerEvent};
use crate::audit::batch::verify_device_batch;
use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::state::AppState;
use crate::store::sql::{Script, Statement, Value, insert_rows};

/// Most events accepted in one upload.
pub const MAX_BATCH: usize = 500;

/// The route devices upload to, as the server's own events name it.
pub const UPLOAD_ROUTE: &str = "/v1/audit/batches";

fn seq_i64(seq: u64) -> Result<i64, ServerError> {
    i64::try_from(seq).map_err(|_| ServerError::BadRequest {
        field: "device_seq",
    })
}

fn parse_hash(s: &str) -> Result<Hash32, ServerError> {
    Hash32::from_hex(s).ok_or(ServerError::Internal("stored hash malformed"))
}

/// The stored event at (device, seq): its hash and its `prev_hash`.
async fn stored_at(
    conn: &mut AnyConnection,
    device: Uuid,
    seq: u64,
) -> Result<Option<(Hash32, Hash32)>, ServerError> {
    if seq == 0 {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT hash, event_json FROM audit_events WHERE device_id = $1 AND device_seq = $2",
    )
    .bind(device.to_string())
    .bind(seq_i64(seq)?)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let event: AuditEvent = serde_json::from_str(row.get::<&str, _>(1))
        .map_err(|_| ServerError::Internal("stored event malformed"))?;
    Ok(Some((parse_hash(row.get::<&str, _>(0))?, event.prev_hash)))
}

/// The event at (device, seq), accepted earlier in this batch or stored before it.
async fn known(
    conn: &mut AnyConnection,
    accepted: &HashMap<u64, (Hash32, Hash32)>,
    device: Uuid,
    seq: u64,
) -> Result<Option<(Hash32, Hash32)>, ServerError> {
    match accepted.get(&seq) {
        Some(found) => Ok(Some(*found)),
        None => stored_at(conn, device, seq).await,
    }
}

/// The `audit_events` row of a verified event, but for its place in the log: built before
/// the write turn, placed (given its leaf index) in it.
pub(super) struct EventRow(Vec<Value>);

/// The row of [`EventRow`].
pub(super) fn event_row(
    scope: &ClinicScope,
    signed: &SignedAuditEvent,
    hash: &Hash32,
    now_ms: i64,
) -> Result<EventRow, ServerError> {
    let e = &signed.event;
    let json = serde_json::to_string(e).map_err(|_| ServerError::Internal("event json"))?;
    Ok(EventRow(vec![
        Value::Text(e.id.to_string()),
        Value::Text(scope.clinic_id().to_string()),
        Value::Text(e.device_id.to_string()),
        Value::Int(seq_i64(e.device_seq)?),
        Value::Text(e.actor_user_id.to_string()),
        Value::OptText(e.patient_id.map(|p| p.to_string())),
        Value::from(e.action.as_str()),
        Value::Int(e.occurred_at_ms),
        Value::Text(json),
        Value::Text(hash.to_hex()),
        Value::Text(signed.signature.clone()),
        Value::Int(now_ms),
    ]))
}

/// The statements that store verified events, each at its leaf index, a hundred rows each.
pub(super) fn event_inserts(rows: impl IntoIterator<Item = (EventRow, i64)>) -> Vec<Statement> {
    let rows = rows
        .into_iter()
        .map(|(EventRow(mut row), leaf)| {
            row.push(Value::Int(leaf));
            row
        })
        .collect();
    insert_rows(
        "INSERT INTO audit_events (id, clinic_id, device_id, device_seq, actor_user_id, patient_id,
           action, occurred_at_ms, event_json, hash, signature, received_at_ms, leaf_index) VALUES ",
        "",
        rows,
    )
}

/// Why the log refused a signed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    /// A different event at a sequence the server already holds.
    Fork,
    /// An event whose link disagrees with a stored neighbour.
    ChainBreak,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Fork => "fork",
            AlertKind::ChainBreak => "chain_break",
        }
    }
}

/// A signed event the log refused, kept as evidence.
struct Refused<'a> {
    signed: &'a SignedAuditEvent,
    hash: Hash32,
    kind: AlertKind,
}

/// Keeps each refused event (once) as a tamper alert, and records a `tamper_alert` event
/// for it in the clinic's server chain in the same transaction: the log then commits to the
/// alert (the refused event's hash and kind), so `audit verify` notices an alert removed,
/// changed or made up. The actor is the one the device's signed event names.
async fn record_alerts(
    tx: &mut AnyConnection,
    state: &AppState,
    scope: &ClinicScope,
    refused: Vec<Refused<'_>>,
    seen: &RequestSeen,
) -> Result<(), ServerError> {
    let mut fresh: Vec<Refused<'_>> = Vec::new();
    for r in refused {
        let e = &r.signed.event;
        if fresh
            .iter()
            .any(|f| f.hash == r.hash && f.signed.event.device_seq == e.device_seq)
        {
            continue;
        }
        let stored: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM audit_alerts WHERE device_id = $1 AND device_seq = $2 AND hash = $3",
        )
        .bind(e.device_id.to_string())
        .bind(seq_i64(e.device_seq)?)
        .bind(r.hash.to_hex())
        .fetch_optional(&mut *tx)
        .await?;
        if stored.is_none() {
            fresh.push(r);
        }
    }
    if fresh.is_empty() {
        return Ok(());
    }
    let drafts = fresh
        .iter()
        .map(|r| ServerEvent {
            actor_user_id: r.signed.event.actor_user_id,
            actor_role: r.signed.event.actor_role,
            action: AuditAction::TamperAlert,
            resource_type: "audit_event".to_owned(),
            resource_id: r.hash.to_hex(),
            patient_id: None,
            fields: vec![r.kind.as_str().to_owned()],
            outcome: Outcome::Denied,
            route: UPLOAD_ROUTE.to_owned(),
            break_glass: None,
            request: seen.clone(),
        })
        .collect();
    let logged = server_chain::record_in(&mut *tx, state, scope, drafts).await?;
    let now_ms = state.clock.now_ms();
    for (r, logged_id) in fresh.iter().zip(logged) {
        let e = &r.signed.event;
        let json = serde_json::to_string(e).map_err(|_| ServerError::Internal("event json"))?;
        sqlx::query(
            "INSERT INTO audit_alerts (clinic_id, device_id, device_seq, kind, hash, event_json,
               signature, received_at_ms, logged_event_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(scope.clinic_id().to_string())
        .bind(e.device_id.to_string())
        .bind(seq_i64(e.device_seq)?)
        .bind(r.kind.as_str())
        .bind(r.hash.to_hex())
        .bind(json)
        .bind(&r.signed.signature)
        .bind(now_ms)
        .bind(logged_id.to_string())
        .execute(&mut *tx)
        .await?;
        tracing::warn!(device_id = %e.device_id, seq = e.device_seq, kind = r.kind.as_str(),
            "audit tamper alert recorded");
    }
    Ok(())
}

/// Moves the device's contiguous mark forward over stored events; returns (seq, hash).
pub(crate) async fn advance_head(
    conn: &mut AnyConnection,
    scope: &ClinicScope,
    device: Uuid,
) -> Result<(u64, Hash32), ServerError> {
    let head = sqlx::query(
        "SELECT contiguous_seq, contiguous_hash FROM audit_device_heads WHERE device_id = $1",
    )
    .bind(device.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let (mut seq, mut hash) = match head {
        Some(r) => (
            u64::try_from(r.get::<i64, _>(0)).unwrap_or(0),
            parse_hash(r.get::<&str, _>(1))?,
        ),
        None => (0, Hash32::GENESIS),
    };
    let later = sqlx::query(
        "SELECT device_seq, hash FROM audit_events WHERE device_id = $1 AND device_seq > $2 ORDER BY device_seq",
    )
    .bind(device.to_string())
    .bind(seq_i64(seq)?)
    .fetch_all(&mut *conn)
    .await?;
    let mut max_seq = seq;
    for row in &later {
        let s = u64::try_from(row.get::<i64, _>(0)).unwrap_or(0);
        max_seq = max_seq.max(s);
        if s == seq + 1 {
            seq = s;
            hash = parse_hash(row.get::<&str, _>(1))?;
        }
    }
    set_head(conn, scope, device, (seq, hash), max_seq).await?;
    Ok((seq, hash))
}

/// Stores a chain's head: its highest contiguous sequence and that event's hash, and the
/// highest sequence stored (which never goes down).
async fn set_head(
    conn: &mut AnyConnection,
    scope: &ClinicScope,
    device: Uuid,
    head: (u64, Hash32),
    max_seq: u64,
) -> Result<(), ServerError> {
    head_upsert(scope, device, head, max_seq)?
        .query()
        .execute(conn)
        .await?;
    Ok(())
}

/// The statement of [`set_head`].
pub(super) fn head_upsert(
    scope: &ClinicScope,
    device: Uuid,
    (seq, hash): (u64, Hash32),
    max_seq: u64,
) -> Result<Statement, ServerError> {
    let mut st = Statement::new(
        "INSERT INTO audit_device_heads (device_id, clinic_id, contiguous_seq, contiguous_hash, max_seq)
         VALUES (",
    );
    st.bind(device.to_string())
        .push(", ")
        .bind(scope.clinic_id().to_string())
        .push(", ")
        .bind(seq_i64(seq)?)
        .push(", ")
        .bind(hash.to_hex())
        .push(", ")
        .bind(seq_i64(max_seq)?)
        .push(
            ")
         ON CONFLICT (device_id) DO UPDATE SET contiguous_seq = excluded.contiguous_seq,
           contiguous_hash = excluded.contiguous_hash, max_seq = CASE WHEN excluded.max_seq > audit_device_heads.max_seq
                          THEN excluded.max_seq ELSE audit_device_heads.max_seq END",
        );
    Ok(st)
}

/// Authenticates, stores and logs one upload, marks the device seen, and signs the receipt.
/// `seen` is the upload request as the server saw it, for the tamper alerts it may record.
pub async fn ingest(
    state: &AppState,
    upload: &AuditUpload,
    seen: &RequestSeen,
) -> Result<AuditReceipt, ServerError> {
    if upload.events.len() > MAX_BATCH {
        return Err(ServerError::BadRequest { field: "events" });
    }
    let verified = verify_device_batch(state, upload.device_id, &upload.events).await?;
    let (device, scope) = (verified.device, verified.scope);
    let mut actors = HashSet::new();
    for signed in &upload.events {
        let actor = signed.event.actor_user_id;
        if actors.insert(actor) && !state.store.is_clinic_user(&scope, actor).await? {
            return Err(ServerError::BadRequest {
                field: "actor_user_id",
            });
        }
    }
    let now = state.clock.now_ms();
    // Rows are built before the write turn: only their leaf indices need the log.
    let mut events = upload
        .events
        .iter()
        .zip(verified.hashes)
        .map(|(signed, hash)| Ok((signed, hash, event_row(&scope, signed, &hash, now)?)))
        .collect::<Result<Vec<_>, ServerError>>()?;
    events.sort_by_key(|(s, _, _)| s.event.device_seq);
    if events
        .first()
        .is_some_and(|(s, _, _)| s.event.device_seq == 0)
    {
        return Err(ServerError::BadRequest {
            field: "device_seq",
        });
    }

    let clinic = scope.clinic_id();
    let mut tx = state.store.begin_write().await?;
    tx.lock_clinic(clinic).await?;

    // What is stored of this chain, so the common case (appending past everything stored)
    // needs no lookups: nothing exists at or after `max_seq + 1`, and the link to the
    // previous event is the head or the batch's own previous event.
    let head = sqlx::query(
        "SELECT contiguous_seq, contiguous_hash, max_seq FROM audit_device_heads WHERE device_id = $1",
    )
    .bind(device.id.to_string())
    .fetch_optional(&mut *tx)
    .await?;
    let (head_seq, head_hash, stored_max) = match head {
        Some(r) => (
            u64::try_from(r.get::<i64, _>(0)).unwrap_or(0),
            parse_hash(r.get::<&str, _>(1))?,
            u64::try_from(r.get::<i64, _>(2)).unwrap_or(u64::MAX),
        ),
        None => (0, Hash32::GENESIS, 0),
    };
    let mut max_seq = stored_max;
    let mut last_stored: Option<(u64, Hash32)> = None;

    let mut forked = Vec::new();
    let mut refused = Vec::new();
    // The events are written together after the checks; until then `accepted` answers for
    // them (a batch may carry the same event twice).
    let mut fresh: Vec<(u64, Hash32, EventRow)> = Vec::with_capacity(events.len());
    let mut accepted: HashMap<u64, (Hash32, Hash32)> = HashMap::new();
    for (signed, hash, row) in events {
        let e = &signed.event;
        let seq = e.device_seq;
        let beyond = seq > max_seq;
        if !beyond && let Some((existing, _)) = known(&mut tx, &accepted, device.id, seq).await? {
            if existing != hash {
                refused.push(Refused {
                    signed,
                    hash,
                    kind: AlertKind::Fork,
                });
                forked.push(seq);
            }
            continue;
        }
        let prev = match (seq, last_stored) {
            (1, _) => Some(Hash32::GENESIS),
            (_, Some((s, h))) if s + 1 == seq => Some(h),
            _ if seq - 1 == head_seq => Some(head_hash),
            _ if seq - 1 > max_seq => None,
            _ => known(&mut tx, &accepted, device.id, seq - 1)
                .await?
                .map(|(h, _)| h),
        };
        let next_link = if seq + 1 > max_seq {
            None
        } else {
            known(&mut tx, &accepted, device.id, seq + 1)
                .await?
                .map(|(_, p)| p)
        };
        if prev.is_some_and(|p| p != e.prev_hash) || next_link.is_some_and(|p| p != hash) {
            refused.push(Refused {
                signed,
                hash,
                kind: AlertKind::ChainBreak,
            });
            forked.push(seq);
            continue;
        }
        accepted.insert(seq, (hash, e.prev_hash));
        fresh.push((seq, hash, row));
        last_stored = Some((seq, hash));
        max_seq = max_seq.max(seq);
    }
    // The alerts' server events go into the log first, then this batch's events.
    record_alerts(&mut tx, state, &scope, refused, seen).await?;
    // The log as this process last committed it, if that is still the stored one.
    let size = log::tree_size(&mut tx, clinic).await?;
    let mut tree = match state.chain_tips.log(clinic) {
        Some(known) if known.size() == size => known,
        _ => log::frontier_at(&mut tx, clinic, size).await?,
    };
    let latest = log::latest_checkpoint(&mut tx, clinic).await?;
    let mut growth = log::Growth::new(&mut tree, clinic);
    let mut placed = HashMap::with_capacity(fresh.len());
    let rows = fresh
        .into_iter()
        .map(|(seq, hash, row)| {
            let leaf = growth.push(&hash)?;
            placed.insert(seq, leaf);
            Ok((row, leaf))
        })
        .collect::<Result<Vec<_>, ServerError>>()?;
    let mut writes = Script::default();
    writes
        .extend(event_inserts(rows))
        .extend(growth.into_statements());
    // With nothing stored past the head before this batch, the new head follows from the
    // batch alone; otherwise the stored events past it are read.
    let head = (stored_max == head_seq).then(|| {
        let (mut seq, mut hash) = (head_seq, head_hash);
        while let Some((next, _)) = accepted.get(&(seq + 1)) {
            seq += 1;
            hash = *next;
        }
        (seq, hash)
    });
    if let Some(head) = head {
        writes.push(head_upsert(&scope, device.id, head, max_seq)?);
    }
    writes.push(crate::devices::registry::seen_statement(
        device.id, now, None,
    ));
    let (checkpoint, insert) = log::sign_checkpoint(&state.audit_key, clinic, &tree, now, latest)?;
    writes.extend(insert);
    writes.execute(&mut tx).await.map_err(|e| match e {
        // An event id stored under another sequence: a replay in disguise. (The leaf
        // indices cannot clash: the log was read under the clinic's lock.)
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            ServerError::Conflict { field: "id" }
        }
        e => e.into(),
    })?;
    let (contiguous_seq, contiguous_hash) = match head {
        Some(head) => head,
        None => advance_head(&mut tx, &scope, device.id).await?,
    };
    // The head's leaf, for the receipt's proof: placed just now, or stored before.
    let head_leaf = match placed.get(&contiguous_seq) {
        Some(leaf) => Some(*leaf),
        None if contiguous_seq == 0 => None,
        None => {
            let leaf: Option<i64> = sqlx::query_scalar(
                "SELECT leaf_index FROM audit_events WHERE device_id = $1 AND device_seq = $2",
            )
            .bind(device.id.to_string())
            .bind(seq_i64(contiguous_seq)?)
            .fetch_one(&mut *tx)
            .await?;
            Some(leaf.ok_or(ServerError::Internal("stored event not in the log"))?)
        }
    };
    tx.commit().await?;
    state.chain_tips.grown(clinic, tree.clone());
    // The proof is read after the write turn: the tree of this size never changes.
    let inclusion = match head_leaf {
        None => None,
        Some(leaf) => {
            let leaf = u64::try_from(leaf)
                .map_err(|_| ServerError::Internal("stored event not in the log"))?;
            let mut conn = state.store.pool().acquire().await?;
            Some(log::inclusion(&mut conn, clinic, leaf, tree.size()).await?)
        }
    };

    let mut receipt = AuditReceipt {
        device_id: device.id,
        highest_contiguous_seq: contiguous_seq,
        contiguous_hash,
        forked,
        checkpoint,
        inclusion,
        signature: String::new(),
    };
    receipt.signature = state.audit_key.sign_hex(&receipt.canonical_bytes());
    Ok(receipt)
}
