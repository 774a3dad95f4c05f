//! The checkpoint publisher: while the server runs, it signs a checkpoint for every clinic
//! log that grew without an upload (a server event alone does not sign one), so a proof
//! against a recent checkpoint is always at hand.

use std::time::Duration;

use crate::state::AppState;

/// How often the server signs checkpoints for logs that grew without an upload.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);

/// Signs checkpoints every `interval` for as long as it runs (the server spawns it; tests
/// spawn it with a short interval).
pub async fn publish_checkpoints(state: AppState, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        let now = state.clock.now_ms();
        if let Err(e) = super::log::checkpoint_grown(&state.store, &state.audit_key, now).await {
            tracing::warn!(error = %e, "regular checkpoint failed; retrying next interval");
        }
    }
}
