//! `provision_50_concurrent_ms`: fifty clinics provisioned at once through `POST /v1/clinics`
//! over TLS, each with its first admin (a first password hashed with argon2id), an
//! enrollment code and the server's audit event, all committed. The baseline is the part
//! no provisioning can skip: the fifty argon2id hashes alone, run the way the server runs
//! them. On the embedded SQLite store, and on PostgreSQL when
//! `CLINICDESK_BENCH_POSTGRES_URL` names a server (`cargo xtask bench` starts one).

use std::time::Instant;

use anyhow::Context;
use clinicdesk_server::admin::operator::create_operator_token;
use clinicdesk_server::time::SystemClock;
use serde_json::json;

use crate::audit::{fresh_postgres_database, runtime, served_on};
use crate::metrics::Scale;
use crate::report::Metric;

const CLINICS: usize = 50;
/// The issue asks for "about a second".
const TARGET_MS: f64 = 1_250.0;

pub fn provision_50_concurrent_ms(scale: Scale) -> anyhow::Result<Vec<Metric>> {
    let rounds = scale.pick(3, 5);
    let postgres = std::env::var("CLINICDESK_BENCH_POSTGRES_URL").ok();
    runtime()?.block_on(async {
        let baseline = median((0..rounds).map(|_| hashes_ms()), rounds).await?;
        let mut backends = vec![(None, "provision_50_concurrent_ms")];
        if let Some(admin) = &postgres {
            let database = fresh_postgres_database(admin).await?;
            backends.push((Some(database), "provision_50_concurrent_ms_postgres"));
        }
        let mut metrics = Vec::new();
        for (database, name) in backends {
            let served = served_on(database.as_deref()).await?;
            let (_, token) =
                create_operator_token(&served.state.store, &SystemClock, "bench").await?;
            let mut round = 0;
            let ms = median(
                std::iter::from_fn(|| {
                    round += 1;
                    Some(provision_ms(&served.client, &served.url, &token, round))
                }),
                rounds,
            )
            .await?;
            metrics.push(Metric::new(
                name,
                ms,
                "ms",
                "argon2id_50_first_passwords_ms",
                baseline,
                "about 1000 (<= 1250)",
                ms <= TARGET_MS,
            ));
        }
        Ok(metrics)
    })
}

/// The median of `n` timed runs, run one after another.
async fn median<F>(runs: impl Iterator<Item = F>, n: usize) -> anyhow::Result<f64>
where
    F: std::future::Future<Output = anyhow::Result<f64>>,
{
    let mut times = Vec::with_capacity(n);
    for run in runs.take(n) {
        times.push(run.await?);
    }
    times.sort_by(f64::total_cmp);
    times.get(times.len() / 2).copied().context("no runs")
}

/// Fifty provisionings at once; every one must succeed.
async fn provision_ms(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    round: usize,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let answers = futures_util::future::join_all((0..CLINICS).map(|i| {
        client
            .post(format!("{url}/v1/clinics"))
            .bearer_auth(token)
            .json(&json!({
                "idempotency_key": format!("bench-{round}-{i}"),
                "clinic_name": format!("Bench clinic {round}-{i} (synthetic)"),
                "admin_username": "owner",
                "admin_display_name": "Bench Owner (synthetic)",
            }))
            .send()
    }))
    .await;
    let elapsed = started.elapsed().as_secs_f64() * 1e3;
    for answer in answers {
        let status = answer?.status();
        anyhow::ensure!(status.as_u16() == 201, "a provisioning answered {status}");
    }
    Ok(elapsed)
}

/// The fifty first-password hashes alone, all asked for at once and run as the server runs
/// them (in turn, one per core).
async fn hashes_ms() -> anyhow::Result<f64> {
    let started = Instant::now();
    let hashes = futures_util::future::join_all((0..CLINICS).map(|i| {
        clinicdesk_server::secrets::passwords::hash_in_turn(format!("bench-first-password-{i}"))
    }))
    .await;
    let elapsed = started.elapsed().as_secs_f64() * 1e3;
    for hash in hashes {
        hash?;
    }
    Ok(elapsed)
}
