//! The server's own audit events: one hash chain per clinic, signed with the server's audit
//! key and stored, chained and logged exactly like a workstation's, so `audit verify`, search
//! and proofs treat both alike. The chain's id is a `devices` row of kind `server`.

use std::collections::HashMap;

use clinicdesk_protocol::audit::{
    AuditAction, AuditEvent, BreakGlass, Hash32, Outcome, RecordChange, Recorder, RequestSeen,
    SignedAuditEvent,
};
use clinicdesk_protocol::merkle::Frontier;
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::UserInfo;
use sqlx::AnyConnection;
use uuid::Uuid;

use super::log;
use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::session::SessionTouch;
use crate::state::AppState;
use crate::store::Store;
use crate::store::sql::Script;

/// One event for the server to record, before its chain position and signature.
#[derive(Debug, Clone)]
pub struct ServerEvent {
    pub actor_user_id: Uuid,
    pub actor_role: Role,
    pub action: AuditAction,
    pub resource_type: String,
    pub resource_id: String,
    pub patient_id: Option<Uuid>,
    pub fields: Vec<String>,
    pub outcome: Outcome,
    pub route: String,
    pub break_glass: Option<BreakGlass>,
    pub request: RequestSeen,
    /// The record version a create or update stored, and its content hashes.
    pub change: Option<RecordChange>,
}

/// A security event about an account or a device (no patient, no fields), by `actor`.
pub fn security_event(
    actor: &UserInfo,
    action: AuditAction,
    resource_type: &str,
    resource_id: String,
    route: &str,
    request: RequestSeen,
) -> ServerEvent {
    ServerEvent {
        actor_user_id: actor.user_id,
        actor_role: actor.role,
        action,
        resource_type: resource_type.to_owned(),
        resource_id,
        patient_id: None,
        fields: Vec::new(),
        outcome: Outcome::Success,
        route: route.to_owned(),
        break_glass: None,
        request,
        change: None,
    }
}

/// The clinic's server chain id, created on first use. Call with the clinic locked.
async fn chain_id(
    conn: &mut AnyConnection,
    scope: &ClinicScope,
    now_ms: i64,
) -> Result<Uuid, ServerError> {
    if let Some(id) = Store::server_chain(&mut *conn, scope).await? {
        return Ok(id);
    }
    let id = Uuid::now_v7();
    Store::create_server_chain(conn, scope, id, now_ms).await?;
    Ok(id)
}

/// Where a clinic's server chain and Merkle log end.
#[derive(Debug, Clone)]
struct Tip {
    chain: Uuid,
    seq: u64,
    hash: Hash32,
    log: Frontier,
}

/// The tips this process last committed, per clinic, so that [`record`] (one event per
/// PHI read) writes without first reading the chain's head and the log's frontier: three
/// round trips through the driver fewer. A tip is only a guess. If another writer (an
/// upload, an event recorded in another transaction, another server process) has moved
/// the chain or the log on since, the new event's (chain, sequence) or its leaf's index is
/// already taken, the write fails on that unique key, and `record` reads the tip and tries
/// once more. A tip is kept only after its transaction commits, and the stored chain and
/// log only grow, so a guess is never ahead of them and can never store a fork.
///
/// Uploads keep the log's part up to date ([`Tips::grown`]) and use it when its size is
/// the stored log's ([`Tips::log`]), which spares them reading the frontier.
#[derive(Debug, Default)]
pub struct Tips(std::sync::Mutex<HashMap<Uuid, Known>>);

/// What this process last committed of a clinic's chain and log.
#[derive(Debug, Clone)]
struct Known {
    /// The server chain's end, once this process has written or read it.
    chain: Option<(Uuid, u64, Hash32)>,
    log: Frontier,
}

impl Tips {
    fn guard(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Known>> {
        // A panic elsewhere cannot leave a wrong guess behind, only a stale one.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, clinic: Uuid) -> Option<Tip> {
        let known = self.guard().get(&clinic).cloned()?;
        let (chain, seq, hash) = known.chain?;
        Some(Tip {
            chain,
            seq,
            hash,
            log: known.log,
        })
    }

    fn keep(&self, clinic: Uuid, tip: Tip) {
        self.guard().insert(
            clinic,
            Known {
                chain: Some((tip.chain, tip.seq, tip.hash)),
                log: tip.log,
            },
        );
    }

    fn forget(&self, clinic: Uuid) {
        self.guard().remove(&clinic);
    }

    /// The clinic's log as this process last committed it, if it knows it.
    pub(crate) fn log(&self, clinic: Uuid) -> Option<Frontier> {
        self.guard().get(&clinic).map(|k| k.log.clone())
    }

    /// Another transaction of this process committed the log grown to `log`. Only a larger
    /// log replaces the known one: commits finish in any order, and a guess that is behind
    /// costs a retry, never a fork.
    pub(crate) fn grown(&self, clinic: Uuid, log: Frontier) {
        let mut tips = self.guard();
        match tips.get_mut(&clinic) {
            Some(known) if known.log.size() < log.size() => known.log = log,
            Some(_) => {}
            None => {
                tips.insert(clinic, Known { chain: None, log });
            }
        }
    }
}

/// Signs and stores `events` as the next links of the clinic's server chain and leaves of
/// its log, in one transaction: either all are recorded or the caller gets an error.
pub async fn record(
    state: &AppState,
    scope: &ClinicScope,
    events: Vec<ServerEvent>,
) -> Result<(), ServerError> {
    record_with(state, scope, events, None).await
}

/// [`record`], writing the session's last-seen time in the same transaction (a PHI read's
/// only other write): one durable commit per audited request instead of two. The touch is
/// marked written only once that transaction commits.
pub async fn record_with(
    state: &AppState,
    scope: &ClinicScope,
    events: Vec<ServerEvent>,
    touch: Option<&SessionTouch>,
) -> Result<(), ServerError> {
    if events.is_empty() {
        return Ok(());
    }
    let clinic = scope.clinic_id();
    let guess = state.chain_tips.get(clinic);
    let guessed = guess.is_some();
    let tip = match record_once(state, scope, &events, guess, touch).await {
        Ok(tip) => tip,
        Err(e) if guessed => {
            tracing::debug!(error = %e, "server chain tip was stale; reading it");
            state.chain_tips.forget(clinic);
            record_once(state, scope, &events, None, touch).await?
        }
        Err(e) => return Err(e),
    };
    state.chain_tips.keep(clinic, tip);
    if let Some(touch) = touch {
        touch.mark_written();
    }
    Ok(())
}

/// One attempt of [`record_with`], from the guessed tip or, without one, the stored one.
async fn record_once(
    state: &AppState,
    scope: &ClinicScope,
    events: &[ServerEvent],
    guess: Option<Tip>,
    touch: Option<&SessionTouch>,
) -> Result<Tip, ServerError> {
    let now = state.clock.now_ms();
    let touched = |mut script: Script| {
        if let Some(touch) = touch {
            script.push(touch.statement());
        }
        script
    };
    if let Some(tip) = guess {
        // Nothing to read: the whole transaction is one script.
        let (script, _, tip) = append(state, scope, tip, events.to_vec(), now)?;
        state
            .store
            .write_locked(scope.clinic_id(), touched(script))
            .await?;
        return Ok(tip);
    }
    let mut tx = state.store.begin_write().await?;
    tx.lock_clinic(scope.clinic_id()).await?;
    let tip = stored_tip(&mut tx, scope, now).await?;
    let (script, _, tip) = append(state, scope, tip, events.to_vec(), now)?;
    touched(script).execute(&mut tx).await?;
    tx.commit().await?;
    Ok(tip)
}

/// [`record`] inside the caller's transaction, for changes that must not happen without
/// their event (a second factor set up, a reset): both commit or neither does. Answers
/// the recorded events' ids, in order.
pub async fn record_in(
    tx: &mut AnyConnection,
    state: &AppState,
    scope: &ClinicScope,
    events: Vec<ServerEvent>,
) -> Result<Vec<Uuid>, ServerError> {
    let (script, ids) = script_in(tx, state, scope, events).await?;
    script.execute(&mut *tx).await?;
    Ok(ids)
}

/// [`record_in`]'s statements, not yet run: the caller runs them in its transaction with
/// its own (an import batch sends its rows and their events as one script). Answers the
/// events' ids, in order.
pub(crate) async fn script_in(
    tx: &mut AnyConnection,
    state: &AppState,
    scope: &ClinicScope,
    events: Vec<ServerEvent>,
) -> Result<(Script, Vec<Uuid>), ServerError> {
    if events.is_empty() {
        return Ok((Script::default(), Vec::new()));
    }
    log::lock_clinic(&mut *tx, scope.clinic_id()).await?;
    let now = state.clock.now_ms();
    let tip = stored_tip(&mut *tx, scope, now).await?;
    let (script, ids, _) = append(state, scope, tip, events, now)?;
    Ok((script, ids))
}

/// The clinic's tip as stored. Call with the clinic locked.
async fn stored_tip(
    conn: &mut AnyConnection,
    scope: &ClinicScope,
    now_ms: i64,
) -> Result<Tip, ServerError> {
    let chain = chain_id(&mut *conn, scope, now_ms).await?;
    // The server chain never has gaps: its last event is its tip.
    let (seq, hash) = Store::chain_end(&mut *conn, chain)
        .await?
        .unwrap_or((0, Hash32::GENESIS));
    let log = log::frontier(&mut *conn, scope.clinic_id()).await?;
    Ok(Tip {
        chain,
        seq,
        hash,
        log,
    })
}

/// Signs `events` as the next links of the chain at `tip` and leaves of its log. Answers
/// the statements that store them, their ids, and the tip after them; nothing is written.
fn append(
    state: &AppState,
    scope: &ClinicScope,
    mut tip: Tip,
    events: Vec<ServerEvent>,
    now: i64,
) -> Result<(Script, Vec<Uuid>, Tip), ServerError> {
    let clinic = scope.clinic_id();
    let mut ids = Vec::with_capacity(events.len());
    let mut rows = Vec::with_capacity(events.len());
    let mut growth = log::Growth::new(&mut tip.log, clinic);
    for draft in events {
        tip.seq += 1;
        let event = AuditEvent {
            id: Uuid::now_v7(),
            clinic_id: clinic,
            actor_user_id: draft.actor_user_id,
            actor_role: draft.actor_role,
            recorded_by: Recorder::Server,
            device_id: tip.chain,
            device_seq: tip.seq,
            action: draft.action,
            resource_type: draft.resource_type,
            resource_id: draft.resource_id,
            patient_id: draft.patient_id,
            fields: draft.fields,
            outcome: draft.outcome,
            occurred_at_ms: now,
            offline: false,
            route: draft.route,
            break_glass: draft.break_glass,
            request: Some(draft.request),
            prev_hash: tip.hash,
            change: draft.change,
        };
        let bytes = event.canonical_bytes();
        let hash = Hash32::of_canonical(&bytes);
        let signed = SignedAuditEvent {
            signature: state.audit_key.sign_hex(&bytes),
            event,
        };
        rows.push((
            Store::event_row(scope, &signed, &hash, now)?,
            growth.push(&hash)?,
        ));
        ids.push(signed.event.id);
        tip.hash = hash;
    }
    let nodes = growth.into_statements();
    let mut script = Script::default();
    // The events first: a stale tip fails on their (chain, sequence) or leaf index. The
    // chain keeps no head row (`audit_device_heads` is workstations' upload progress): its
    // tip is its last event.
    script.extend(Store::event_inserts(rows)).extend(nodes);
    Ok((script, ids, tip))
}
