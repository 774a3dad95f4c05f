//! `clinicdesk-bench [--quick] --out DIR`: the desktop core's benchmarks. Every figure is
//! compared with a baseline measured in the same run on the same machine, and written to
//! `DIR/report.json` (one object per metric) and `DIR/report.md`. Nothing is asserted:
//! `met` says whether the target was reached here.

#![allow(clippy::print_stdout)] // the report table is this program's output

mod app_core;
mod app_start;
mod audit;
mod cache_search;
mod initial_sync;
mod load;
mod lock_latency;
mod metrics;
mod offline_write;
mod provisioning;
mod records;
mod report;
mod sign_in;

use std::path::PathBuf;

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    if let Ok(mode) = std::env::var(metrics::MEMORY_SECURITY_CHILD) {
        return metrics::memory_security_child(&mode);
    }
    let mut quick = false;
    let mut only: Option<String> = None;
    let mut out = PathBuf::from("target/bench");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--out" => out = args.next().context("--out needs a directory")?.into(),
            "--only" => only = Some(args.next().context("--only needs a metric name prefix")?),
            other => anyhow::bail!(
                "unknown argument {other}; usage: clinicdesk-bench [--quick] [--only PREFIX] [--out DIR]"
            ),
        }
    }
    let scale = if quick {
        metrics::Scale::Quick
    } else {
        metrics::Scale::Full
    };
    let mut results = Vec::new();
    for (name, run) in metrics::ALL {
        if only.as_deref().is_some_and(|p| !name.starts_with(p)) {
            continue;
        }
        println!("measuring {name} …");
        results.extend(run(scale)?);
    }
    report::write(&out, &results)?;
    println!("{}", report::table(&results));
    println!("written to {}", out.join("report.json").display());
    Ok(())
}
