//! Uploading the outbox: one batch on demand ([`Core::upload_once`]) and the background
//! loop the Tauri shell (or a test) spawns on its runtime ([`run_uploader`]); and the
//! loop that sends the user's queued changes ([`run_change_sender`]). The batch
//! itself is the device part's; what a refusal means (a revoked device hands in what it
//! can, then wipes itself) is decided here, where both parts are in reach.

use std::sync::Arc;
use std::time::Duration;

use clinicdesk_protocol::ErrorCode;
use clinicdesk_protocol::app::Revocation;

use super::Core;
use crate::error::AppError;

/// Most batches a revoked device sends before it wipes itself: the outbox of many offline
/// days, bounded so that the wipe never waits on the server for long.
const HAND_IN_BATCHES: usize = 50;

/// Failed sends (unreachable, a server error) after which a revoked device stops handing
/// in and wipes itself with what is left.
const HAND_IN_FAILURES: u32 = 3;

impl Core {
    /// Sends one batch of waiting events and forgets those the server's receipt names.
    /// Needs no user session: the events' device signatures are the credential, so this
    /// runs while locked too. Returns how many events of the batch the receipt settled
    /// (stored, or re-chained onto the server's head to be sent again).
    pub async fn upload_once(&self) -> Result<usize, AppError> {
        match self.device.upload_batch(self.clock.as_ref()).await {
            Ok(sent) if sent.revoked => Err(self.revoked(sent.settled as u64).await),
            Ok(sent) => Ok(sent.settled),
            Err(e) => Err(self.on_server_error(e).await),
        }
    }

    /// The server says this device is revoked (a refusal, or a receipt for events it still
    /// took). The session ends at once. Then the outbox is handed in, batch by batch: the
    /// server keeps what was signed before the revocation (BRIEF invariant 3: the reads of
    /// a lost workstation must reach the trail), within `HAND_IN_BATCHES` and
    /// `HAND_IN_FAILURES`. Only then does the device wipe itself, keeping the count of
    /// what it handed in and what it could not for the revoked screen. `handed_in`: events
    /// already stored by the send that brought the news.
    pub(super) async fn revoked(&self, handed_in: u64) -> AppError {
        self.end_session_for_revocation();
        let mut handed_in = handed_in;
        let mut failures = 0;
        for _ in 0..HAND_IN_BATCHES {
            match self.device.upload_batch(self.clock.as_ref()).await {
                Ok(sent) if sent.settled == 0 => break,
                Ok(sent) => handed_in += sent.settled as u64,
                // Nothing left that was signed before the revocation.
                Err(AppError::Server(api)) if api.code == ErrorCode::DeviceRevoked => break,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(code = %e.to_api().code, failures, "handing in the outbox failed");
                    if failures >= HAND_IN_FAILURES {
                        break;
                    }
                    tokio::time::sleep(backoff(failures)).await;
                }
            }
        }
        self.wipe(Revocation {
            handed_in,
            left_behind: self.device.pending_count(),
        });
        AppError::DeviceRevoked
    }

    /// The sequence number of the last event this device signed (0 before the first).
    pub fn outbox_last_seq(&self) -> Result<u64, AppError> {
        self.device.outbox_last_seq()
    }

    /// Resolves when something was added to the outbox (or a session opened).
    pub async fn upload_wanted(&self) {
        self.device.upload_wanted().await;
    }
}

/// Uploads whenever events are waiting: woken by new events, polling every `interval`,
/// backing off exponentially (with jitter, up to a minute) while the server is unreachable.
pub async fn run_uploader(core: Arc<Core>, interval: Duration) {
    let mut failures: u32 = 0;
    loop {
        let delay = match core.upload_once().await {
            Ok(n) if n > 0 => {
                failures = 0;
                continue;
            }
            Ok(_) => {
                failures = 0;
                interval
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::debug!(code = %e.to_api().code, failures, "audit upload failed");
                backoff(failures)
            }
        };
        tokio::select! {
            () = core.upload_wanted(), if failures == 0 => {}
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Sends the signed-in user's queued changes whenever their session is online: at once
/// when a session opens (changes made offline wait in its queue), then every `interval`,
/// backing off while the server is unreachable (a change made in the app is also sent at
/// once; this picks up what waited); and after that, refreshes the offline copy of the
/// user's days when one is due.
pub async fn run_change_sender(core: Arc<Core>, interval: Duration) {
    let mut failures: u32 = 0;
    loop {
        let sent = core.send_changes().await;
        if sent.is_ok() {
            // Changes first, then the copy of the days (which may then show them).
            let _ = core.sync_if_due().await;
        }
        let delay = match sent {
            Ok(_) => {
                failures = 0;
                interval
            }
            // A session unlocked offline has no token: nothing to try until the next one.
            Err(AppError::Unreachable) if core.status().offline_session => interval,
            Err(AppError::Unreachable | AppError::NotTrusted) => {
                failures = failures.saturating_add(1);
                backoff(failures).max(interval)
            }
            // Locked, signed out, or a refusal the core already acted on.
            Err(_) => interval,
        };
        tokio::select! {
            () = core.changes_wanted.notified() => failures = 0,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// 1 s, 2 s, 4 s … capped at 60 s, plus up to half again at random.
pub fn backoff(failures: u32) -> Duration {
    let base =
        Duration::from_secs(1u64 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(60));
    let mut jitter = [0u8; 2];
    let _ = getrandom::fill(&mut jitter);
    let fraction = f64::from(u16::from_be_bytes(jitter)) / f64::from(u16::MAX) / 2.0;
    base + base.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert!(backoff(1) >= Duration::from_secs(1) && backoff(1) <= Duration::from_millis(1500));
        assert!(backoff(3) >= Duration::from_secs(4));
        assert!(backoff(30) >= Duration::from_secs(60) && backoff(30) <= Duration::from_secs(90));
    }
}
