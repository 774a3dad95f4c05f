//! The server's own audit events: one hash chain per clinic, signed with the server's audit
//! key and stored, chained and logged exactly like a workstation's, so `audit verify`, search
//! and proofs treat both alike. The chain's id is a `devices` row of kind `server`.

use clinicdesk_protocol::audit::{
    AuditAction, AuditEvent, BreakGlass, Hash32, Outcome, Recorder, RequestSeen, SignedAuditEvent,
};
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::UserInfo;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::ingest::{event_row, insert_events, set_head};
use super::log;
use crate::app::AppState;
use crate::auth::ClinicScope;
use crate::error::ServerError;

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
    }
}

/// The clinic's server chain id, created on first use. Call with the clinic locked.
async fn chain_id(
    conn: &mut AnyConnection,
    scope: &ClinicScope,
    now_ms: i64,
) -> Result<Uuid, ServerError> {
    let clinic = scope.clinic_id().to_string();
    let existing: Option<String> =
        sqlx::query_scalar("SELECT id FROM devices WHERE clinic_id = $1 AND kind = 'server'")
            .bind(&clinic)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(id) = existing {
        return Uuid::parse_str(&id).map_err(|_| ServerError::Internal("stored id malformed"));
    }
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO devices (id, clinic_id, name, public_key, enrolled_at_ms, kind)
         VALUES ($1, $2, 'ClinicDesk server', $3, $4, 'server')",
    )
    .bind(id.to_string())
    .bind(&clinic)
    .bind(format!("server:{clinic}"))
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(id)
}

/// Signs and stores `events` as the next links of the clinic's server chain and leaves of
/// its log, in one transaction: either all are recorded or the caller gets an error.
pub async fn record(
    state: &AppState,
    scope: &ClinicScope,
    events: Vec<ServerEvent>,
) -> Result<(), ServerError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut tx = state.store.begin_write().await?;
    record_in(&mut tx, state, scope, events).await?;
    tx.commit().await?;
    Ok(())
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
    let clinic = scope.clinic_id();
    log::lock_clinic(&mut *tx, clinic).await?;
    let now = state.clock.now_ms();
    let chain = chain_id(&mut *tx, scope, now).await?;
    // The server chain never has gaps, so its head is its tip.
    let head = sqlx::query(
        "SELECT contiguous_seq, contiguous_hash FROM audit_device_heads WHERE device_id = $1",
    )
    .bind(chain.to_string())
    .fetch_optional(&mut *tx)
    .await?;
    let (mut seq, mut prev_hash) = match head {
        Some(r) => (
            u64::try_from(r.get::<i64, _>(0))
                .map_err(|_| ServerError::Internal("stored head malformed"))?,
            Hash32::from_hex(r.get::<&str, _>(1))
                .ok_or(ServerError::Internal("stored head malformed"))?,
        ),
        None => (0, Hash32::GENESIS),
    };
    let mut logged = Vec::with_capacity(events.len());
    let mut rows = Vec::with_capacity(events.len());
    for draft in events {
        seq += 1;
        let event = AuditEvent {
            id: Uuid::now_v7(),
            clinic_id: clinic,
            actor_user_id: draft.actor_user_id,
            actor_role: draft.actor_role,
            recorded_by: Recorder::Server,
            device_id: chain,
            device_seq: seq,
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
            prev_hash,
        };
        let hash = event.hash();
        let signed = SignedAuditEvent {
            signature: state.audit_key.sign_hex(&event.canonical_bytes()),
            event,
        };
        rows.push(event_row(scope, &signed, &hash, now)?);
        logged.push((signed.event.id, hash));
        prev_hash = hash;
    }
    insert_events(&mut *tx, rows).await?;
    log::append(&mut *tx, clinic, &logged).await?;
    // No gaps: the last event recorded is the head.
    set_head(&mut *tx, scope, chain, (seq, prev_hash), seq).await?;
    Ok(logged.into_iter().map(|(id, _)| id).collect())
}
