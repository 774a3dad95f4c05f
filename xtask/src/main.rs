//! `cargo xtask demo` and `cargo xtask test`: everything a fresh Debian 12 machine needs,
//! installed by these commands and nothing by hand. Also `bench`, and `tidy`, the
//! repo-wide layering checks (`tidy.rs`).
//!
//! Order matters (see ../shared/BUILD-NOTES.md): system packages, then tools, then the wasm
//! UI (the app embeds `ui/dist` at compile time), then one host build, then the tests, all
//! with the same package selection and profile so nothing is compiled twice.

#![allow(clippy::print_stdout)]

mod evidence;
mod fuzz;
mod postgres;
mod setup;
mod testrun;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage:
  cargo xtask demo [--server-only] [--fresh] [--port N]
      Install what is missing, build, start the server on its embedded SQLite default
      with the synthetic demo clinic, and launch the desktop app against it.
  cargo xtask test
      Install what is missing, build, and run every test (unit, integration, desktop
      end-to-end), ending with one line: N passed, N failed.
  cargo xtask bench [--quick]
      Build the benchmarks in release mode and run them; each figure is a ratio against a
      baseline measured in the same run. Writes target/bench/report.json and report.md.
      Then fuzzes each target of fuzz/ for 5 minutes (--quick: 30 s).
  cargo xtask evidence [--data-dir DIR --key-dir DIR] [--scan HOST:PORT --ca FILE]
      The compliance evidence report, target/evidence/report.md and report.html: each
      HIPAA technical safeguard (45 CFR 164.312) with what implements it and its tests (from
      tests/safeguards.toml), run now; then the live evidence: the clinic's policies, second
      factors per user, audit verify and a TLS scan, of a fresh synthetic clinic or of the
      server's data named. Exits non-zero when a safeguard is a gap.
  cargo xtask fuzz [SECONDS]
      Fuzz each target of fuzz/ (cargo-fuzz, coverage-guided) for SECONDS (default 60),
      from the committed corpus; a crash's input is kept in fuzz/artifacts/.
  cargo xtask policy-doc
      Regenerate docs/policy.md from the field table (protocol/src/policy/fields.rs).
  cargo xtask tidy [--root DIR] [--allowlist-draft]
      Check the layering rules of ARCHITECTURE.md by reading the source (no build, about a
      second): SQL only in the store, axum only in http, where proofs are built, the wall
      clock, module docs, tests named by invariants, the server's module cycles. Exits
      non-zero on a violation. --root checks another tree; --allowlist-draft also prints
      today's violations as xtask/tidy-allow.txt lines.";

/// The PIN of the demo's software security key (synthetic, like everything in the demo).
const DEMO_KEY_PIN: &str = "123456";

fn main() {
    if let Err(e) = run() {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => demo(&args[1..]),
        Some("test") => testrun::test(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("tidy") => tidy(&args[1..]),
        Some("evidence") => evidence::evidence(&args[1..]),
        Some("fuzz") => fuzz_for(&args[1..]),
        Some("policy-doc") => policy_doc(),
        Some("-h" | "--help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command {other:?}\n{USAGE}"),
    }
}

/// `cargo xtask bench [--quick]`: the benchmarks, optimized, on this machine.
fn bench(args: &[String]) -> Result<()> {
    let quick = match args {
        [] => false,
        [q] if q == "--quick" => true,
        _ => bail!("usage: cargo xtask bench [--quick]"),
    };
    setup::ensure(setup::Purpose::Bench)?;
    // The audit search runs on PostgreSQL too, on a throwaway cluster on loopback.
    stage("starting PostgreSQL for the search benchmark");
    let cluster = match postgres::Cluster::start() {
        Ok(cluster) => Some(cluster),
        Err(e) => {
            eprintln!(
                "\n!!! PostgreSQL could not be started: the PostgreSQL search figure is SKIPPED\n!!! {e:#}\n"
            );
            None
        }
    };
    // The start-up benchmark launches the app as it ships: release UI, release app. (The
    // next `cargo xtask test` or `demo` writes the debug UI back.)
    build_ui_as(Profile::Release)?;
    stage("building the app (release)");
    run_cmd(cargo().args(["build", "--release", "--package", "clinicdesk-app"]))?;
    stage("building and running the benchmarks (release)");
    let out = target_dir().join("bench");
    let out = out.to_string_lossy();
    let mut args = vec!["run", "--release", "--package", "clinicdesk-bench", "--"];
    if quick {
        args.push("--quick");
    }
    args.extend(["--out", &out]);
    // The lock benchmark runs the real app core, whose keys live in the Secret Service; the
    // start-up benchmark, the app on a display (Xvfb).
    let mut cmd = testrun::cargo_in_keyring_session("bench-harness", true, &args)?;
    cmd.env(
        "CLINICDESK_BENCH_APP",
        target_dir().join("release/clinicdesk-app"),
    )
    .env("CLINICDESK_TAURI_DRIVER", setup::tauri_driver_bin());
    if let Some(cluster) = &cluster {
        cmd.env("CLINICDESK_BENCH_POSTGRES_URL", cluster.admin_url());
    }
    run_cmd(&mut cmd)?;
    // The fuzzing's full version (`cargo xtask test` runs 15 s per target).
    let (_, crashed) = fuzz::run(if quick { 30 } else { 300 })?;
    if !crashed.is_empty() {
        bail!("fuzzing found crashes in {}", crashed.join(", "));
    }
    Ok(())
}

/// `cargo xtask fuzz [SECONDS]`: each fuzz target for that long (default 60 s).
fn fuzz_for(args: &[String]) -> Result<()> {
    let seconds = match args {
        [] => 60,
        [n] => n.parse().context("usage: cargo xtask fuzz [SECONDS]")?,
        _ => bail!("usage: cargo xtask fuzz [SECONDS]"),
    };
    setup::ensure(setup::Purpose::Bench)?;
    let (_, crashed) = fuzz::run(seconds)?;
    if !crashed.is_empty() {
        bail!("fuzzing found crashes in {}", crashed.join(", "));
    }
    Ok(())
}

/// `cargo xtask policy-doc`: the protocol's own test writes the table out when asked, so
/// the Markdown has one author (`policy::fields::markdown`) and xtask needs no crate of ours.
fn policy_doc() -> Result<()> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(root())
        .args(["test", "-q", "-p", "clinicdesk-protocol", "--lib"])
        .args(["the_policy_doc_is_current", "--", "--exact"])
        .arg("policy::fields::tests::the_policy_doc_is_current")
        .env("CLINICDESK_WRITE_POLICY_DOC", "1");
    run_cmd(&mut cmd)
}

/// `cargo xtask tidy [--root DIR] [--allowlist-draft]`: the repo-wide rules, also run by
/// `cargo test` as `tidy::tests::tidy`.
fn tidy(args: &[String]) -> Result<()> {
    let mut dir = root();
    let mut draft = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--root" => dir = it.next().context("--root needs a directory")?.into(),
            "--allowlist-draft" => draft = true,
            other => bail!("unknown tidy option {other:?}\n{USAGE}"),
        }
    }
    let report = tidy::run(&dir)?;
    print!("{report}");
    if draft {
        println!("\n# A draft of {}/xtask/tidy-allow.txt:", dir.display());
        print!("{}", report.allowlist_draft());
    }
    if !report.violations.is_empty() {
        bail!("tidy found {} violations", report.violations.len());
    }
    Ok(())
}

/// The workspace root (the parent of this crate), from the manifest directory `cargo run`
/// gives at run time. The one compiled in is only the fallback: checkouts at different
/// paths that share a target directory (CI's cache) run whichever `target/debug/xtask` was
/// linked last, so a compiled-in path can name another checkout, or none on this machine.
pub fn root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

pub fn stage(name: &str) {
    println!("\n==> {name}");
}

/// Runs a command to completion, failing on a non-zero exit.
pub fn run_cmd(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{:?} failed with {status}", cmd.get_program());
    }
    Ok(())
}

pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Builds the Leptos UI to wasm and writes `ui/dist`.
pub fn build_ui() -> Result<()> {
    build_ui_as(Profile::Dev)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    Dev,
    Release,
}

/// [`build_ui`] in `profile` (the benchmarks measure the app as it ships).
fn build_ui_as(profile: Profile) -> Result<()> {
    stage("building the UI (wasm32)");
    let mut cmd = cargo();
    cmd.args([
        "build",
        "--package",
        "clinicdesk-ui",
        "--target",
        "wasm32-unknown-unknown",
    ]);
    if profile == Profile::Release {
        cmd.arg("--release");
    }
    run_cmd(&mut cmd)?;
    let wasm = target_dir()
        .join("wasm32-unknown-unknown")
        .join(if profile == Profile::Release {
            "release"
        } else {
            "debug"
        })
        .join("clinicdesk-ui.wasm");
    let dist = root().join("ui/dist");
    std::fs::create_dir_all(&dist).context("creating ui/dist")?;
    run_cmd(
        Command::new(setup::wasm_bindgen_bin())
            .args([
                "--target",
                "web",
                "--no-typescript",
                "--out-name",
                "clinicdesk_ui",
                "--out-dir",
            ])
            .arg(&dist)
            .arg(&wasm),
    )?;
    for file in ["index.html", "style.css"] {
        std::fs::copy(root().join("ui").join(file), dist.join(file))
            .with_context(|| format!("copying ui/{file}"))?;
    }
    Ok(())
}

/// The one host build both commands share: same selection, same profile, no rebuilds.
pub fn build_host() -> Result<()> {
    stage("building server, app and tests");
    run_cmd(cargo().args(["build", "--all-targets"]))
}

fn demo(args: &[String]) -> Result<()> {
    let mut server_only = false;
    let mut fresh = false;
    let mut port = 8443u16;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--server-only" => server_only = true,
            "--fresh" => fresh = true,
            "--port" => {
                port = it
                    .next()
                    .and_then(|p| p.parse().ok())
                    .context("--port needs a number")?
            }
            other => bail!("unknown demo option {other:?}\n{USAGE}"),
        }
    }
    setup::ensure(setup::Purpose::Demo)?;
    build_ui()?;
    build_host()?;

    let demo_dir = target_dir().join("demo");
    if fresh && demo_dir.exists() {
        std::fs::remove_dir_all(&demo_dir).context("removing the old demo data")?;
    }
    let server_dir = demo_dir.join("server");
    let app_dir = demo_dir.join("app");
    std::fs::create_dir_all(&server_dir)?;
    std::fs::create_dir_all(&app_dir)?;
    let server_bin = target_dir().join("debug/clinicdesk-server");
    let app_bin = target_dir().join("debug/clinicdesk-app");

    stage("seeding the synthetic demo clinic");
    run_cmd(
        Command::new(&server_bin)
            .arg("seed")
            .arg("--data-dir")
            .arg(&server_dir),
    )?;

    stage(&format!("starting the server on https://127.0.0.1:{port}"));
    let mut server = Command::new(&server_bin)
        .arg("serve")
        .arg("--data-dir")
        .arg(&server_dir)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting the server")?;
    // The server prints one `listening https://ADDR ca=PATH` line once it accepts connections.
    let stdout = server.stdout.take().context("server output")?;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    match lines.next() {
        Some(Ok(line)) if line.starts_with("listening ") => println!("{line}"),
        _ => {
            let _ = server.kill();
            bail!("the server did not start (is port {port} taken? try --port)");
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    let ca = server_dir.join("tls/ca.pem");
    println!("Server data: {}", server_dir.display());
    println!(
        "Server CA (pinned by the app at enrollment): {}",
        ca.display()
    );
    if server_only {
        println!("Press Ctrl-C to stop.");
        server.wait()?;
        return Ok(());
    }

    stage("launching the desktop app");
    let mut app = setup::desktop_session_command(&app_bin)?;
    app.env("CLINICDESK_DATA_DIR", &app_dir)
        .env("CLINICDESK_SERVER_URL", format!("https://127.0.0.1:{port}"))
        .env("CLINICDESK_SERVER_CA", &ca)
        // The demo build's software security key, a CTAP2 key with a PIN that touches
        // itself (never compiled into a release).
        .env("CLINICDESK_SOFT_SECURITY_KEY", "pin")
        .env("CLINICDESK_SOFT_SECURITY_KEY_PIN", DEMO_KEY_PIN);
    println!("App data: {}", app_dir.display());
    println!(
        "Each user's first sign-in sets up a second factor: add the key the app shows to an \
         authenticator app, or get codes here with `oathtool --totp -b KEY`; or choose \
         \"Use a security key\" (a software key in this demo, PIN {DEMO_KEY_PIN}, forgotten \
         when the app closes)."
    );
    println!("Close the window or press Ctrl-C to stop everything.");
    let result = app.status();
    let _ = server.kill();
    let _ = server.wait();
    result.context("running the app")?;
    Ok(())
}
