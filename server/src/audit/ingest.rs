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
//! - A revoked device's events signed before its revocation are stored, each flagged by a
//!   `received_after_revocation` event of the server chain in the same transaction; the
//!   rest of its batch is not, and the receipt tells it that it is revoked.
//! - What an event claims is checked against the sign-ins on the workstation ([`super::claims`]):
//!   an actor who never signed in there is refused as a tamper alert; a role or a time in
//!   doubt is stored and flagged by a `claim_flagged` server event. Free text with a control
//!   character refuses the batch.
//! - A store that no longer holds what the device's last receipt says it held is a rollback
//!   ([`super::rollback`]): alerted, and the device's chain goes on from that receipt's head.

use std::collections::{HashMap, HashSet};

use clinicdesk_protocol::audit::{
    AuditAction, AuditEvent, Hash32, Outcome, RequestSeen, SignedAuditEvent,
};
use clinicdesk_protocol::wire::{AuditReceipt, AuditUpload};
use sqlx::AnyConnection;
use uuid::Uuid;

use super::claims::{Claims, Verdict};
use super::server_chain::{self, ServerEvent};
use super::{log, rollback};
use crate::audit::batch::verify_device_batch;
use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::state::AppState;
use crate::store::sql::Script;
use crate::store::{Alert, EventRow, Evidence, Store, Written};

/// Most events accepted in one upload.
pub const MAX_BATCH: usize = 500;

/// The route devices upload to, as the server's own events name it.
pub const UPLOAD_ROUTE: &str = "/v1/audit/batches";

/// The stored event at (device, seq): its hash and its `prev_hash`.
async fn stored_at(
    conn: &mut AnyConnection,
    device: Uuid,
    seq: u64,
) -> Result<Option<(Hash32, Hash32)>, ServerError> {
    if seq == 0 {
        return Ok(None);
    }
    Store::event_link(conn, device, seq).await
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

/// Why the log refused a signed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    /// A different event at a sequence the server already holds.
    Fork,
    /// An event whose link disagrees with a stored neighbour.
    ChainBreak,
    /// An event naming an actor who never signed in on the workstation ([`super::claims`]).
    UnknownActor,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Fork => "fork",
            AlertKind::ChainBreak => "chain_break",
            AlertKind::UnknownActor => "unknown_actor",
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
        if !Store::alert_stored(&mut *tx, e.device_id, e.device_seq, &r.hash).await? {
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
            change: None,
        })
        .collect();
    let logged = server_chain::record_in(&mut *tx, state, scope, drafts).await?;
    let now_ms = state.clock.now_ms();
    for (r, logged_id) in fresh.iter().zip(logged) {
        let e = &r.signed.event;
        let alert = Alert {
            evidence: Evidence::Event(r.signed),
            hash: &r.hash,
            kind: r.kind.as_str(),
            received_at_ms: now_ms,
            logged_event_id: logged_id,
        };
        Store::insert_alert(&mut *tx, scope, alert).await?;
        tracing::warn!(device_id = %e.device_id, seq = e.device_seq, kind = r.kind.as_str(),
            "audit tamper alert recorded");
    }
    Ok(())
}

/// Keeps a rollback's alert (once per held receipt) with its `tamper_alert` server event, in
/// the upload's transaction. No user did this: the event's actor is the nil id, as for the
/// operator's console.
async fn record_rollback(
    tx: &mut AnyConnection,
    state: &AppState,
    scope: &ClinicScope,
    rolled_back: &rollback::Rollback<'_>,
    seen: &RequestSeen,
) -> Result<(), ServerError> {
    if rolled_back.alerted(&mut *tx).await? {
        return Ok(());
    }
    let event = ServerEvent {
        actor_user_id: Uuid::nil(),
        actor_role: clinicdesk_protocol::policy::Role::Admin,
        action: AuditAction::TamperAlert,
        resource_type: "audit_receipt".to_owned(),
        resource_id: rolled_back.resource_id(),
        patient_id: None,
        fields: vec![rollback::KIND.to_owned()],
        outcome: Outcome::Denied,
        route: UPLOAD_ROUTE.to_owned(),
        break_glass: None,
        request: seen.clone(),
        change: None,
    };
    let logged = server_chain::record_in(&mut *tx, state, scope, vec![event]).await?;
    let logged_event_id = *logged
        .first()
        .ok_or(ServerError::Internal("rollback alert not logged"))?;
    rolled_back
        .keep(tx, scope, logged_event_id, state.clock.now_ms())
        .await
}

/// Moves the device's contiguous mark forward over stored events; returns (seq, hash).
pub(crate) async fn advance_head(
    conn: &mut AnyConnection,
    scope: &ClinicScope,
    device: Uuid,
) -> Result<(u64, Hash32), ServerError> {
    let (mut seq, mut hash) = Store::contiguous_mark(&mut *conn, device)
        .await?
        .unwrap_or((0, Hash32::GENESIS));
    let later = Store::events_after(&mut *conn, device, seq).await?;
    let mut max_seq = seq;
    for (s, h) in later {
        max_seq = max_seq.max(s);
        if s == seq + 1 {
            seq = s;
            hash = h;
        }
    }
    Store::set_head(conn, scope, device, (seq, hash), max_seq).await?;
    Ok((seq, hash))
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
    let late = verified.late();
    let admitted: Vec<(&SignedAuditEvent, Hash32)> = upload
        .events
        .iter()
        .zip(verified.hashes.iter().copied())
        .filter(|(signed, _)| verified.admits(&signed.event))
        .collect();
    let (device, scope) = (verified.device, verified.scope);
    if let Some(field) = upload
        .events
        .iter()
        .find_map(|s| s.event.control_text_field())
    {
        return Err(ServerError::BadRequest { field });
    }
    let mut actors = HashSet::new();
    for (signed, _) in &admitted {
        let actor = signed.event.actor_user_id;
        if actors.insert(actor) && !state.store.is_clinic_user(&scope, actor).await? {
            return Err(ServerError::BadRequest {
                field: "actor_user_id",
            });
        }
    }
    let now = state.clock.now_ms();
    let judged: Vec<&AuditEvent> = admitted.iter().map(|(s, _)| &s.event).collect();
    let claims = Claims::load(&state.store, &scope, &device, &judged, now).await?;
    // Rows are built before the write turn: only their leaf indices need the log.
    let mut events = admitted
        .into_iter()
        .map(|(signed, hash)| Ok((signed, hash, Store::event_row(&scope, signed, &hash, now)?)))
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

    let held = rollback::authentic(state.audit_key.server_keys(), &scope, device.id, upload);

    let clinic = scope.clinic_id();
    // Background work: a person's write waits behind one upload at most.
    let mut tx = state.store.begin_background_write(clinic).await?;

    // What is stored of this chain, so the common case (appending past everything stored)
    // needs no lookups: nothing exists at or after `max_seq + 1`, and the link to the
    // previous event is the head or the batch's own previous event.
    let (mut head_seq, mut head_hash, mut stored_max) =
        match Store::device_head(&mut tx, device.id).await? {
            Some(h) => (h.contiguous_seq, h.contiguous_hash, h.max_seq),
            None => (0, Hash32::GENESIS, 0),
        };
    // A store rolled back behind the device's receipt: alerted, and the chain goes on from
    // the head that receipt vouches for (its alert's server event leads this batch's).
    if let Some(held) = held
        && let Some(rolled_back) = rollback::judge(&mut tx, clinic, held, head_seq).await?
    {
        record_rollback(&mut tx, state, &scope, &rolled_back, seen).await?;
        if let Some(resumed) = rolled_back.resume_from {
            stored_max = stored_max.max(resumed.0);
            Store::set_head(&mut tx, &scope, device.id, resumed, stored_max).await?;
            (head_seq, head_hash) = resumed;
        }
    }
    let mut max_seq = stored_max;
    let mut last_stored: Option<(u64, Hash32)> = None;

    let mut forked = Vec::new();
    let mut refused = Vec::new();
    // The events are written together after the checks; until then `accepted` answers for
    // them (a batch may carry the same event twice).
    let mut fresh: Vec<(u64, Hash32, EventRow)> = Vec::with_capacity(events.len());
    let mut received_late: Vec<&SignedAuditEvent> = Vec::new();
    let mut flagged: Vec<(&SignedAuditEvent, Vec<&'static str>)> = Vec::new();
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
        let doubted = match claims.judge(e) {
            Verdict::UnknownActor => {
                refused.push(Refused {
                    signed,
                    hash,
                    kind: AlertKind::UnknownActor,
                });
                forked.push(seq);
                continue;
            }
            Verdict::Stored(doubted) => doubted,
        };
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
        if late {
            received_late.push(signed);
        }
        if !doubted.is_empty() {
            flagged.push((signed, doubted));
        }
        last_stored = Some((seq, hash));
        max_seq = max_seq.max(seq);
    }
    // The alerts' and flags' server events go into the log first, then this batch's events.
    record_alerts(&mut tx, state, &scope, refused, seen).await?;
    flag_received_late(&mut tx, state, &scope, &received_late, seen).await?;
    flag_claims(&mut tx, state, &scope, flagged, seen).await?;
    // The log as this process last committed it, if that is still the stored one.
    let size = Store::tree_size(&mut tx, clinic).await?;
    let mut tree = match state.chain_tips.log(clinic) {
        Some(known) if known.size() == size => known,
        _ => log::frontier_at(&mut tx, clinic, size).await?,
    };
    let latest = Store::latest_checkpoint(&mut tx, clinic).await?;
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
        .extend(Store::event_inserts(rows))
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
        writes.push(Store::head_upsert(&scope, device.id, head, max_seq)?);
    }
    writes.push(crate::devices::registry::seen_statement(
        device.id, now, None,
    ));
    let (checkpoint, fresh_checkpoint) =
        log::sign_checkpoint(&state.audit_key, clinic, &tree, now, latest);
    if fresh_checkpoint {
        writes.push(Store::checkpoint_insert(&checkpoint)?);
    }
    if Store::write_upload(&mut tx, writes).await? == Written::Clashed {
        // An event id stored under another sequence: a replay in disguise. (The leaf
        // indices cannot clash: the log was read under the clinic's lock.)
        return Err(ServerError::Conflict { field: "id" });
    }
    let (contiguous_seq, contiguous_hash) = match head {
        Some(head) => head,
        None => advance_head(&mut tx, &scope, device.id).await?,
    };
    // The head's leaf, for the receipt's proof: placed just now, or stored before.
    let head_leaf = match placed.get(&contiguous_seq) {
        Some(leaf) => Some(*leaf),
        None if contiguous_seq == 0 => None,
        None => {
            let leaf = Store::leaf_at(&mut tx, device.id, contiguous_seq).await?;
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
            Some(log::inclusion_alone(&state.store, &scope, leaf, tree.size()).await?)
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
        device_revoked: late,
        rotations: state.audit_key.rotations().to_vec(),
    };
    receipt.signature = state.audit_key.sign_hex(&receipt.canonical_bytes());
    Ok(receipt)
}

/// Flags each event a revoked device handed in: a `received_after_revocation` event of the
/// clinic's server chain names it (`resource_id`), in the same transaction, so the flag is a
/// leaf of the log like the event, and the clinic's admins see it among the alerts. No
/// patient id: the flag is about the device, not another access to the patient's record.
async fn flag_received_late(
    tx: &mut AnyConnection,
    state: &AppState,
    scope: &ClinicScope,
    events: &[&SignedAuditEvent],
    seen: &RequestSeen,
) -> Result<(), ServerError> {
    if events.is_empty() {
        return Ok(());
    }
    let drafts = events
        .iter()
        .map(|signed| {
            flag(
                signed,
                AuditAction::ReceivedAfterRevocation,
                Vec::new(),
                seen,
            )
        })
        .collect();
    server_chain::record_in(&mut *tx, state, scope, drafts).await?;
    tracing::warn!(device_id = %events[0].event.device_id, count = events.len(),
        "audit events received from a revoked device");
    Ok(())
}

/// Flags each stored event whose claims are in doubt ([`super::claims`]): a `claim_flagged` event
/// of the clinic's server chain names it (`resource_id`) and the claims (`fields`), in the
/// same transaction, so the flag is a leaf of the log like the event.
async fn flag_claims(
    tx: &mut AnyConnection,
    state: &AppState,
    scope: &ClinicScope,
    flagged: Vec<(&SignedAuditEvent, Vec<&'static str>)>,
    seen: &RequestSeen,
) -> Result<(), ServerError> {
    if flagged.is_empty() {
        return Ok(());
    }
    let drafts = flagged
        .iter()
        .map(|(signed, doubted)| {
            let fields = doubted.iter().map(|f| (*f).to_owned()).collect();
            flag(signed, AuditAction::ClaimFlagged, fields, seen)
        })
        .collect();
    server_chain::record_in(&mut *tx, state, scope, drafts).await?;
    tracing::warn!(device_id = %flagged[0].0.event.device_id, count = flagged.len(),
        "audit events stored with claims in doubt");
    Ok(())
}

/// The server chain's event flagging a stored device event: it names the event
/// (`resource_id`), and its actor as the event does; no patient id, since the flag is about
/// the workstation, not another access to a record.
fn flag(
    signed: &SignedAuditEvent,
    action: AuditAction,
    fields: Vec<String>,
    seen: &RequestSeen,
) -> ServerEvent {
    ServerEvent {
        actor_user_id: signed.event.actor_user_id,
        actor_role: signed.event.actor_role,
        action,
        resource_type: "audit_event".to_owned(),
        resource_id: signed.event.id.to_string(),
        patient_id: None,
        fields,
        outcome: Outcome::Success,
        route: UPLOAD_ROUTE.to_owned(),
        break_glass: None,
        request: seen.clone(),
        change: None,
    }
}
