//! The idle watch: a plain async loop the Tauri shell (or a benchmark) spawns on its
//! runtime, asking the app every tick whether its idle deadline has passed. The deadline
//! itself is kept on the core's monotonic clock ([`super::clock`]), so tests move time
//! instead of waiting for this loop.

use std::sync::Arc;
use std::time::Duration;

use super::Lockable;

/// How often the idle deadline is checked: the lock lands at most this late.
pub const IDLE_TICK: Duration = Duration::from_millis(250);

pub async fn run_idle_watch(app: Arc<impl Lockable>) {
    let mut tick = tokio::time::interval(IDLE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        app.lock_if_idle();
    }
}
