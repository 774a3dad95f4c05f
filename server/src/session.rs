//! Who is calling: a bearer session checked against its idle and absolute timeouts, an
//! operator token, a live device; the session's last-seen time, and its end at logout.
//! Domain code, no axum: `http::authorize` calls these and puts the result in the request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use uuid::Uuid;

use crate::error::ServerError;
use crate::scope::Principal;
use crate::state::AppState;
use crate::store::DeviceRecord;

/// A session's last-seen time, for a request whose audit event is recorded: written in the
/// same transaction as that event ([`crate::audit::server_chain::record_with`]), so an
/// audited read commits once, not twice; or by [`authorize`] once the handler is done, if
/// nothing wrote it.
#[derive(Debug, Clone)]
pub struct SessionTouch {
    token_hash: String,
    at_ms: i64,
    written: Arc<AtomicBool>,
}

impl SessionTouch {
    pub fn new(principal: &Principal, state: &AppState) -> Self {
        Self {
            token_hash: principal.token_hash.clone(),
            at_ms: state.clock.now_ms(),
            written: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The write, for a transaction to carry.
    pub(crate) fn statement(&self) -> crate::store::sql::Statement {
        crate::store::sessions::touch_statement(&self.token_hash, self.at_ms)
    }

    /// Says that a committed transaction carried the write.
    pub(crate) fn mark_written(&self) {
        self.written.store(true, Ordering::Release);
    }

    pub async fn write_unless_written(&self, state: &AppState) -> Result<(), ServerError> {
        if !self.written.load(Ordering::Acquire) {
            state
                .store
                .touch_session(&self.token_hash, self.at_ms)
                .await?;
        }
        Ok(())
    }
}

/// A request made with a live operator token (`Access::Operator`).
#[derive(Debug, Clone, Copy)]
pub struct OperatorCaller {
    pub token_id: Uuid,
}

pub async fn operator_principal(
    state: &AppState,
    token_hash: &str,
) -> Result<OperatorCaller, ServerError> {
    let token_id = state
        .store
        .live_operator_token(token_hash)
        .await?
        .ok_or(ServerError::Unauthenticated)?;
    Ok(OperatorCaller { token_id })
}

/// Absolute session lifetime: 12 hours.
pub const SESSION_MAX_AGE_MS: i64 = 12 * 60 * 60 * 1000;

pub async fn session_principal(
    state: &AppState,
    token_hash: String,
) -> Result<Principal, ServerError> {
    let session = state
        .store
        .session(&token_hash)
        .await?
        .ok_or(ServerError::Unauthenticated)?;
    if session.device_revoked {
        return Err(ServerError::DeviceRevoked);
    }
    if session.revoked {
        return Err(ServerError::SessionExpired);
    }
    let now = state.clock.now_ms();
    let idle_ms = i64::try_from(session.idle_timeout_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    if now - session.last_seen_at_ms > idle_ms || now - session.created_at_ms > SESSION_MAX_AGE_MS {
        state.store.revoke_session(&token_hash, now).await?;
        return Err(ServerError::SessionExpired);
    }
    Ok(Principal {
        user: session.user,
        device_id: session.device_id,
        token_hash,
        recovery_sign_in: session.recovery,
    })
}

/// Ends the caller's session (logout).
pub async fn log_out(state: &AppState, principal: &Principal) -> Result<(), ServerError> {
    state
        .store
        .revoke_session(&principal.token_hash, state.clock.now_ms())
        .await
}

/// A registered device that is not revoked (`device_unknown`, `device_revoked` otherwise).
pub async fn live_device(state: &AppState, device_id: Uuid) -> Result<DeviceRecord, ServerError> {
    let device = state
        .store
        .device(device_id)
        .await?
        .ok_or(ServerError::DeviceUnknown)?;
    if device.revoked() {
        return Err(ServerError::DeviceRevoked);
    }
    Ok(device)
}
