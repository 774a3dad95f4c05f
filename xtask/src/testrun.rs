//! `cargo xtask test`: setup, build, lint, then every test inside a harness session (Xvfb
//! for the desktop app, a private D-Bus session with an unlocked gnome-keyring for the
//! real Secret Service), and closing lines that name every failed test, then
//! `N passed, N failed` (last, so the end of a cut log still says what failed).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::postgres;
use crate::setup::{self, KEYRING_THEN_EXEC, Purpose};
use crate::{build_host, build_ui, cargo, root, stage};

pub fn test(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        bail!("cargo xtask test takes no options (got {arg:?})");
    }
    let started = std::time::Instant::now();
    setup::ensure(Purpose::Test)?;
    build_ui()?;
    build_host()?;

    let mut problems = Vec::new();
    stage("cargo fmt --check");
    if crate::run_cmd(cargo().args(["fmt", "--all", "--", "--check"])).is_err() {
        problems.push("formatting (run cargo fmt --all)");
    }
    stage("cargo clippy (host and wasm UI)");
    if crate::run_cmd(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"])).is_err() {
        problems.push("clippy on the host crates");
    }
    if crate::run_cmd(cargo().args([
        "clippy",
        "--package",
        "clinicdesk-ui",
        "--target",
        "wasm32-unknown-unknown",
        "--",
        "-D",
        "warnings",
    ]))
    .is_err()
    {
        problems.push("clippy on the UI");
    }

    // Started before the main run: the cross-crate server kill test runs on it too.
    stage("a throwaway PostgreSQL cluster on loopback");
    let cluster = postgres::Cluster::start();

    stage("tests (unit, integration, keychain, TLS, desktop end-to-end)");
    let mut tally = run_tests_in_harness(cluster.as_ref().ok())?;
    if !tally.exit_ok && tally.failed == 0 {
        problems.push("cargo test exited with an error (a test binary failed to build or crashed)");
    }

    // The UI is left out of the host build (it is a wasm crate), but its pure logic (time
    // formatting) has tests that run on the host.
    stage("UI logic tests (host)");
    let ui = run_counted(cargo().args(["test", "--package", "clinicdesk-ui"]))?;
    if !ui.exit_ok && ui.failed == 0 {
        problems.push("the UI's host tests exited with an error");
    }
    tally.add(ui);

    // Each fuzz target counts as a test: clean for its seconds, or failed with its input kept.
    match crate::fuzz::run(15) {
        Ok((clean, crashed)) => {
            tally.passed += clean.len() as u64;
            tally.failed += crashed.len() as u64;
            let named = crashed
                .iter()
                .map(|t| format!("fuzz {t} (its input: fuzz/artifacts/{t})"));
            tally.failures.extend(named);
        }
        Err(e) => {
            eprintln!("fuzzing could not run: {e:#}");
            problems.push("fuzzing (the targets did not build or start)");
        }
    }

    stage("server suite again, on PostgreSQL (throwaway cluster on loopback)");
    match &cluster {
        Ok(cluster) => {
            let mut leg = run_server_suite_on_postgres(cluster)?;
            if !leg.exit_ok && leg.failed == 0 {
                problems.push("the PostgreSQL leg exited with an error");
            }
            for name in &mut leg.failures {
                name.push_str(" (on PostgreSQL)");
            }
            tally.add(leg);
        }
        Err(e) => {
            eprintln!(
                "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
                 !!! PostgreSQL could not be started: the PostgreSQL leg was SKIPPED\n\
                 !!! {e:#}\n\
                 !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
            );
            if std::env::var_os("CI").is_some() {
                problems.push("the PostgreSQL leg (CI never skips it)");
            }
        }
    }
    println!(
        "\nwall time {:.0} s{}",
        started.elapsed().as_secs_f64(),
        if problems.is_empty() {
            String::new()
        } else {
            format!("; also failed: {}", problems.join(", "))
        }
    );
    for name in &tally.failures {
        println!("FAILED: {name}");
    }
    let Tally { passed, failed, .. } = tally;
    println!("{passed} passed, {failed} failed");
    if failed > 0 || !problems.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}

/// A command running `cargo ARGS` in a private D-Bus session with an unlocked gnome-keyring
/// (the real Secret Service) and a fresh HOME under `target/NAME`, under Xvfb when `display`.
/// Cargo and rustup keep their real homes.
pub fn cargo_in_keyring_session(name: &str, display: bool, args: &[&str]) -> Result<Command> {
    let harness = root().join("target").join(name);
    if harness.exists() {
        std::fs::remove_dir_all(&harness).context("clearing the old harness directory")?;
    }
    let home = harness.join("home");
    let xdg = harness.join("xdg");
    for dir in [&home, &xdg] {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    let real_home = std::env::var_os("HOME").context("HOME is not set")?;
    let cargo_home = std::env::var_os("CARGO_HOME").unwrap_or_else(|| {
        std::path::Path::new(&real_home)
            .join(".cargo")
            .into_os_string()
    });
    let rustup_home = std::env::var_os("RUSTUP_HOME").unwrap_or_else(|| {
        std::path::Path::new(&real_home)
            .join(".rustup")
            .into_os_string()
    });
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = if display {
        let mut cmd = Command::new("xvfb-run");
        cmd.args(["-a", "-s", "-screen 0 1280x800x24", "dbus-run-session"]);
        cmd
    } else {
        Command::new("dbus-run-session")
    };
    cmd.args(["--", "sh", "-c"])
        .arg(KEYRING_THEN_EXEC)
        .arg("sh")
        .arg(&cargo_bin)
        .args(args)
        .current_dir(root())
        .env("HOME", &home)
        .env("XDG_RUNTIME_DIR", &xdg)
        .env("CARGO_HOME", &cargo_home)
        .env("RUSTUP_HOME", &rustup_home)
        .env("CLINICDESK_KEYRING_PASSWORD", "clinicdesk-test")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("DISPLAY");
    Ok(cmd)
}

/// Runs `cargo test` under Xvfb and a private D-Bus session with gnome-keyring, echoing
/// its output and adding up the `test result:` lines. With `cluster`, the cross-crate tests
/// that also run on PostgreSQL get it as `CLINICDESK_CROSS_POSTGRES_URL` (the server suite
/// here stays on SQLite: it has its own PostgreSQL leg).
fn run_tests_in_harness(cluster: Option<&postgres::Cluster>) -> Result<Tally> {
    // PostgreSQL-only tests run on the PostgreSQL leg below; here they would test nothing.
    let mut cmd = cargo_in_keyring_session(
        "test-harness",
        true,
        &["test", "--no-fail-fast", "--", "--skip", "postgres_only::"],
    )?;
    cmd.env("CLINICDESK_TEST_HARNESS", "1")
        .env("CLINICDESK_TAURI_DRIVER", setup::tauri_driver_bin())
        .env("CLINICDESK_FHIR_PYTHON", setup::fhir_python())
        .env("CLINICDESK_SCHEMATHESIS", setup::schemathesis_bin());
    if let Some(cluster) = cluster {
        cmd.env("CLINICDESK_CROSS_POSTGRES_URL", cluster.admin_url());
    }
    run_counted(&mut cmd).context("running the test harness")
}

/// Runs the server's unit and integration tests (built by the main run, so nothing is
/// compiled again) against PostgreSQL: each test server gets a database of its own. The
/// tamper and at-rest tests work on SQLite files by hand and have run already.
fn run_server_suite_on_postgres(cluster: &postgres::Cluster) -> Result<Tally> {
    let listing = cargo()
        .args(["test", "--no-run", "--message-format=json"])
        .stderr(Stdio::null())
        .output()
        .context("listing the test binaries")?;
    let binaries = server_test_binaries(&String::from_utf8_lossy(&listing.stdout));
    if binaries.len() != 2 {
        bail!("expected the server's lib and `it` test binaries, found {binaries:?}");
    }
    let mut tally = Tally::default();
    for binary in binaries {
        let run = run_counted(
            Command::new(&binary)
                .args([
                    "--skip",
                    "tamper::",
                    "--skip",
                    "at_rest::",
                    "--skip",
                    "full_disk::",
                ])
                .current_dir(root().join("server"))
                .env("CLINICDESK_TEST_POSTGRES_URL", cluster.admin_url())
                .env("CLINICDESK_TEST_POSTGRES_CA", cluster.ca_file())
                .env("CLINICDESK_FHIR_PYTHON", setup::fhir_python())
                .env("CLINICDESK_SCHEMATHESIS", setup::schemathesis_bin()),
        )
        .with_context(|| format!("running {binary}"))?;
        tally.add(run);
    }
    Ok(tally)
}

/// The executables of clinicdesk-server's lib tests and `it` suite, from cargo's JSON.
fn server_test_binaries(cargo_json: &str) -> Vec<String> {
    cargo_json
        .lines()
        .filter(|l| l.contains("/server#") || l.contains("clinicdesk-server@"))
        .filter(|l| l.contains(r#""name":"it""#) || l.contains(r#""kind":["lib"]"#))
        .filter_map(|l| {
            let start = l.find(r#""executable":""#)? + r#""executable":""#.len();
            let end = start + l[start..].find('"')?;
            Some(l[start..end].to_owned())
        })
        .collect()
}

/// `test result: ok. 12 passed; 0 failed; ...` → (12, 0).
fn parse_result_line(line: &str) -> Option<(u64, u64)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let count = |word: &str| -> Option<u64> {
        let end = rest.find(&format!(" {word}"))?;
        let start = rest[..end].rfind(|c: char| !c.is_ascii_digit())? + 1;
        rest[start..end].parse().ok()
    };
    Some((count("passed")?, count("failed")?))
}

/// `test some::name ... FAILED` → `some::name`.
fn parse_failed_line(line: &str) -> Option<&str> {
    line.strip_prefix("test ")?.strip_suffix(" ... FAILED")
}

/// What test runs added up to: counts, the names of the tests that failed, and whether
/// every command exited cleanly.
struct Tally {
    passed: u64,
    failed: u64,
    failures: Vec<String>,
    exit_ok: bool,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            passed: 0,
            failed: 0,
            failures: Vec::new(),
            exit_ok: true,
        }
    }
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.failures.extend(other.failures);
        self.exit_ok &= other.exit_ok;
    }
}

/// Runs a test command, echoing its output, adding up its `test result:` lines and
/// keeping the names of the tests that failed.
fn run_counted(cmd: &mut Command) -> Result<Tally> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the tests")?;
    let stdout = child.stdout.take().context("test output")?;
    let mut tally = Tally::default();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some((p, f)) = parse_result_line(&line) {
            tally.passed += p;
            tally.failed += f;
        }
        if let Some(name) = parse_failed_line(&line) {
            tally.failures.push(name.to_owned());
        }
    }
    tally.exit_ok = child.wait()?.success();
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::{parse_failed_line, parse_result_line};

    #[test]
    fn names_failed_tests_from_their_lines() {
        assert_eq!(
            parse_failed_line("test records::a_change ... FAILED"),
            Some("records::a_change")
        );
        assert_eq!(parse_failed_line("test records::a_change ... ok"), None);
        assert_eq!(parse_failed_line("failures:"), None);
    }

    #[test]
    fn parses_cargo_test_result_lines() {
        assert_eq!(
            parse_result_line(
                "test result: ok. 12 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s"
            ),
            Some((12, 0))
        );
        assert_eq!(
            parse_result_line("test result: FAILED. 3 passed; 2 failed; 0 ignored"),
            Some((3, 2))
        );
        assert_eq!(parse_result_line("running 3 tests"), None);
    }
}
