//! Uploading the outbox: one batch on demand ([`Core::upload_once`]) and the background
//! loop the Tauri shell (or a test) spawns on its runtime ([`run_uploader`]). The batch
//! itself is the device part's; what a refusal means (a revoked device wipes itself) is
//! decided here, where both parts are in reach.

use std::sync::Arc;
use std::time::Duration;

use super::Core;
use crate::error::AppError;

impl Core {
    /// Sends one batch of waiting events and forgets those the server's receipt names.
    /// Needs no user session: the events' device signatures are the credential, so this
    /// runs while locked too. Returns how many events of the batch the receipt settled
    /// (stored, or re-chained onto the server's head to be sent again).
    pub async fn upload_once(&self) -> Result<usize, AppError> {
        self.device
            .upload_batch(self.clock.as_ref())
            .await
            .map_err(|e| self.on_server_error(e))
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
