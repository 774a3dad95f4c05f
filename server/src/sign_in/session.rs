//! The end of every sign-in: a session for a user who proved every factor. (Checking a
//! session on each request is `crate::session`.)

use clinicdesk_protocol::wire::{LoginResponse, UserInfo};
use uuid::Uuid;

use crate::error::ServerError;
use crate::secrets::random::{hash_secret, token};
use crate::sign_in::throttle;
use crate::state::AppState;

/// A new session for a user who proved every factor, under the clinic's lock policy. The
/// user's sessions beyond the newest two are revoked, and the account's failed attempts
/// are forgotten. `recovery`: a recovery sign-in with a second factor proven just now, the
/// only session that may have the device's escrowed secret released.
pub(crate) async fn issue_session(
    state: &AppState,
    user: &UserInfo,
    device_id: Uuid,
    recovery: bool,
) -> Result<LoginResponse, ServerError> {
    let session_token = token()?;
    state
        .store
        .insert_session(
            &hash_secret(&session_token),
            user,
            device_id,
            state.clock.now_ms(),
            recovery,
        )
        .await?;
    let (idle_timeout_secs, max_offline_secs) = state.store.lock_policy(user.clinic_id).await?;
    throttle::clear(
        state,
        &throttle::Key::account(user.clinic_id, &user.username),
    )
    .await?;
    tracing::info!(user_id = %user.user_id, "session issued");
    Ok(LoginResponse {
        session_token: session_token.into(),
        user: user.clone(),
        idle_timeout_secs,
        max_offline_secs,
        mfa_grant: None,
    })
}
