//! `lock_latency_ms`: how long after its idle deadline the app's lock has completed (audit
//! event recorded, cache closed, keys dropped) while the app is busy: two threads search the
//! cache and record audit events without pause, as a screen full of work would. Against the
//! same measurement with the app doing nothing. Runs the real app core against an
//! in-process server, with the real keychain: `cargo xtask bench` provides a private D-Bus
//! session with an unlocked gnome-keyring.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clinicdesk_protocol::app::Phase;

use crate::app_core::{enroll_and_sign_in, new_core};
use crate::audit::{runtime, served};
use crate::metrics::Scale;
use crate::report::Metric;

/// The idle lock under test: short, so each round is quick.
const IDLE: Duration = Duration::from_millis(600);

pub fn lock_latency_ms(scale: Scale) -> anyhow::Result<Vec<Metric>> {
    let rounds = scale.pick(5, 15);
    let rt = runtime()?;
    let s = rt.block_on(served())?;
    let dir = tempfile::tempdir()?;
    let core = new_core(&s, dir.path(), Some(IDLE))?;
    let locked_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let seen = locked_at.clone();
    core.set_lock_listener(move || {
        *seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
    });
    rt.block_on(async {
        enroll_and_sign_in(&core, &s, "clinician", &s.password).await?;
        // A chart in the cache for the busy threads to find.
        let list = core.appointments().await?;
        let first = list.appointments.first().context("no appointments")?;
        core.open_patient(first.patient_id).await?;
        anyhow::Ok(())
    })?;
    rt.spawn(clinicdesk_app::os::idle::run_idle_watch(core.clone()));
    rt.spawn(clinicdesk_app::core::uploader::run_uploader(
        core.clone(),
        Duration::from_millis(200),
    ));

    let measure = |busy: bool| -> anyhow::Result<f64> {
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..if busy { 2 } else { 0 })
            .map(|_| {
                let (core, stop) = (core.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        // A read of the user's cache under the session's lock (its queue of
                        // changes); locked answers `locked` at once and the thread keeps
                        // trying.
                        let _ = core.unsent_changes();
                    }
                })
            })
            .collect();
        let mut late = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            if core.status().phase == Phase::Locked {
                rt.block_on(core.unlock(&s.password))?;
            }
            *locked_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            core.activity();
            let deadline = Instant::now() + IDLE;
            let locked = loop {
                std::thread::sleep(Duration::from_millis(5));
                if let Some(at) = *locked_at
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                {
                    break at;
                }
                anyhow::ensure!(
                    Instant::now() < deadline + Duration::from_secs(30),
                    "the idle lock never came"
                );
            };
            late.push(locked.saturating_duration_since(deadline));
        }
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            let _ = w.join();
        }
        late.sort();
        Ok(late[late.len() / 2].as_secs_f64() * 1000.0)
    };
    let idle = measure(false)?;
    let busy = measure(true)?;
    Ok(vec![Metric::new(
        "lock_latency_ms",
        busy,
        "ms",
        "lock_latency_idle_app_ms",
        idle,
        "< 1000",
        busy < 1000.0,
    )])
}
