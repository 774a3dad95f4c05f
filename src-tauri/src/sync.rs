//! Background work: the idle-lock watch and the audit uploader, both plain async loops
//! the Tauri shell (or a test) spawns on its runtime.

use std::sync::Arc;
use std::time::Duration;

use crate::session::Core;

/// How often the idle deadline is checked: the lock lands at most this late.
pub const IDLE_TICK: Duration = Duration::from_millis(250);

pub async fn run_idle_watch(core: Arc<Core>) {
    let mut tick = tokio::time::interval(IDLE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        core.lock_if_idle();
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
