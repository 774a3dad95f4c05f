//! Coverage-guided fuzzing with cargo-fuzz (libFuzzer, on the pinned nightly of
//! `setup::FUZZ_TOOLCHAIN`) of the parsers that take input from outside the process: the
//! audit upload and its events' canonical encoding, the receipt as the app checks it, and
//! the sign-in and second-factor bodies, the FHIR `Patient` of an import
//! (`fuzz/fuzz_targets/`). Each run starts from the
//! committed corpus (`fuzz/corpus/TARGET`) and writes what it finds to a directory of its
//! own, so the tree stays clean; a crash leaves its input in `fuzz/artifacts/TARGET` and
//! fails the run. `cargo xtask test` fuzzes each target briefly, `cargo xtask bench` longer.

use std::process::Command;

use anyhow::{Context, Result};

use crate::setup::FUZZ_TOOLCHAIN;
use crate::{root, run_cmd, stage, target_dir};

/// The fuzz targets, as `fuzz/Cargo.toml` names them.
pub const TARGETS: &[&str] = &["audit_batch", "receipt", "sign_in_bodies", "fhir_patient"];

/// `cargo +nightly fuzz ARGS` in `fuzz/`, with its build kept in the target directory.
fn cargo_fuzz(args: &[&str]) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg(format!("+{FUZZ_TOOLCHAIN}"))
        .arg("fuzz")
        .args(args)
        .current_dir(root().join("fuzz"))
        .env("CARGO_TARGET_DIR", target_dir().join("fuzz"))
        // The outer (stable) cargo's own variables would otherwise pick its cargo and rustc.
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTDOC")
        .env_remove("RUSTUP_TOOLCHAIN");
    cmd
}

/// Builds every target, then fuzzes each for `seconds`: the targets that ran clean, and
/// those that did not.
pub fn run(seconds: u64) -> Result<(Vec<&'static str>, Vec<&'static str>)> {
    stage(&format!("fuzzing (cargo-fuzz): {seconds} s per target"));
    run_cmd(&mut cargo_fuzz(&["build", "-O"])).context("building the fuzz targets")?;
    let (mut clean, mut failed) = (Vec::new(), Vec::new());
    for target in TARGETS {
        let found = tempdir(target)?;
        let corpus = root().join("fuzz/corpus").join(target);
        let max_time = format!("-max_total_time={seconds}");
        // libFuzzer prints a line per new input: kept in a log beside what it found, and
        // shown (its end) only when the target fails.
        let log_path = found.with_extension("log");
        let log = std::fs::File::create(&log_path)?;
        let ok = cargo_fuzz(&["run", "-O", target])
            .arg(&found)
            .arg(&corpus)
            .args(["--", &max_time, "-timeout=10", "-print_final_stats=1"])
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .with_context(|| format!("running the fuzz target {target}"))?
            .success();
        let _ = std::fs::remove_dir_all(&found);
        let said = std::fs::read_to_string(&log_path).unwrap_or_default();
        if ok {
            let runs = said
                .lines()
                .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
                .map_or("?", str::trim);
            println!("fuzz {target} ... ok ({runs} runs)");
        } else {
            let lines: Vec<&str> = said.lines().collect();
            println!("{}", lines[lines.len().saturating_sub(40)..].join("\n"));
            println!(
                "fuzz {target} ... FAILED (its input is in fuzz/artifacts; the whole log: {})",
                log_path.display()
            );
        }
        if ok {
            clean.push(*target);
        } else {
            failed.push(*target);
        }
    }
    Ok((clean, failed))
}

/// A fresh directory for what a run finds, outside the tree.
fn tempdir(target: &str) -> Result<std::path::PathBuf> {
    let dir = target_dir().join("fuzz-found").join(target);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
