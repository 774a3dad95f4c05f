//! Installs what this machine lacks: Debian packages, the wasm32 target, wasm-bindgen-cli
//! at exactly the lockfile's wasm-bindgen version, and tauri-driver for the WebDriver tests.
//! Each step checks first, so a warm machine spends a second here.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{root, run_cmd, stage};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Demo,
    Test,
    /// The demo's packages, PostgreSQL (the search benchmark's second backend), and the
    /// WebDriver pieces the app's start-up benchmark drives it with.
    Bench,
}

/// Build and run the app and server.
const DEMO_PACKAGES: &[&str] = &[
    "build-essential",
    "pkg-config",
    "libwebkit2gtk-4.1-dev",
    "libssl-dev",
    // USB security keys: libudev to find them, libclang for the HID bindings' build.
    "libudev-dev",
    "libclang-dev",
    "xvfb",
    "xauth",
    "dbus",
    "gnome-keyring",
    // Codes for the demo's second factor when no phone is at hand.
    "oathtool",
];

/// Also for the tests: WebKitWebDriver, secret-tool to look into the keychain from outside,
/// PostgreSQL for the server's database leg, testssl.sh to scan the running server.
const TEST_PACKAGES: &[&str] = &[
    WEBDRIVER_PACKAGE,
    "libsecret-tools",
    POSTGRES_PACKAGE,
    // The PostgreSQL leg's TLS certificates.
    "openssl",
    "testssl.sh",
];

/// WebKitWebDriver (and WebKit's MiniBrowser), for the WebDriver tests and the start-up
/// benchmark.
const WEBDRIVER_PACKAGE: &str = "webkit2gtk-driver";

/// The server's second database, for its test leg and the search benchmark.
const POSTGRES_PACKAGE: &str = "postgresql-15";

const TAURI_DRIVER_VERSION: &str = "2.1.0";

/// The toolchain cargo-fuzz builds with (libFuzzer and the sanitizers need a nightly), pinned
/// so that every machine fuzzes the same compiler, and the cargo-fuzz that drives it.
pub const FUZZ_TOOLCHAIN: &str = "nightly-2026-10-30";
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// The independent FHIR validator the audit export test runs (R4B models).
const FHIR_RESOURCES_VERSION: &str = "8.3.0";

/// The API fuzzer the server's contract test runs against `/openapi.json`.
const SCHEMATHESIS_VERSION: &str = "4.32.5";

/// The Python of the validator's virtualenv, kept beside the build outputs.
pub fn fhir_python() -> PathBuf {
    crate::target_dir().join("fhir-validator/bin/python")
}

/// schemathesis's command, in its own virtualenv beside the build outputs.
pub fn schemathesis_bin() -> PathBuf {
    crate::target_dir().join("schemathesis/bin/st")
}

/// A Python package pinned in a virtualenv under the target dir: checked with `probe`
/// (Python code that fails unless the right version imports), installed when it fails.
fn ensure_python_package(venv_name: &str, package: &str, version: &str, probe: &str) -> Result<()> {
    stage(&format!("checking {package} (PyPI)"));
    let venv = crate::target_dir().join(venv_name);
    let python = venv.join("bin/python");
    let ok = || {
        Command::new(&python)
            .args(["-c", probe])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if ok() {
        println!("{package} {version} present");
        return Ok(());
    }
    run_cmd(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
    )?;
    run_cmd(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("{package}=={version}")),
    )?;
    if !ok() {
        bail!(
            "{package} {version} did not install into {}",
            venv.display()
        );
    }
    Ok(())
}

fn ensure_python_tools() -> Result<()> {
    ensure_python_package(
        "fhir-validator",
        "fhir.resources",
        FHIR_RESOURCES_VERSION,
        &format!(
            "import fhir.resources, fhir.resources.R4B.bundle; assert fhir.resources.__version__ == '{FHIR_RESOURCES_VERSION}'"
        ),
    )?;
    ensure_python_package(
        "schemathesis",
        "schemathesis",
        SCHEMATHESIS_VERSION,
        &format!(
            "import schemathesis; assert schemathesis.__version__ == '{SCHEMATHESIS_VERSION}'"
        ),
    )
}

/// The pinned nightly (minimal profile) and cargo-fuzz, for `crate::fuzz`.
fn ensure_fuzzing() -> Result<()> {
    stage("checking the fuzzing toolchain and cargo-fuzz");
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if toolchains.lines().any(|l| l.starts_with(FUZZ_TOOLCHAIN)) {
        println!("{FUZZ_TOOLCHAIN} present");
    } else {
        run_cmd(Command::new("rustup").args([
            "toolchain",
            "install",
            FUZZ_TOOLCHAIN,
            "--profile",
            "minimal",
        ]))?;
    }
    let installed = output(Command::new("cargo").args(["install", "--list"]))?;
    if installed.contains(&format!("cargo-fuzz v{CARGO_FUZZ_VERSION}:")) {
        println!("cargo-fuzz {CARGO_FUZZ_VERSION} present");
    } else {
        run_cmd(Command::new("cargo").args([
            "install",
            "cargo-fuzz",
            "--locked",
            "--version",
            &format!("={CARGO_FUZZ_VERSION}"),
        ]))?;
    }
    Ok(())
}

pub fn ensure(purpose: Purpose) -> Result<()> {
    stage("checking system packages");
    let mut wanted: Vec<&str> = DEMO_PACKAGES.to_vec();
    match purpose {
        Purpose::Test => wanted.extend_from_slice(TEST_PACKAGES),
        Purpose::Bench => wanted.extend_from_slice(&[POSTGRES_PACKAGE, WEBDRIVER_PACKAGE]),
        Purpose::Demo => {}
    }
    let missing: Vec<&str> = wanted.into_iter().filter(|p| !deb_installed(p)).collect();
    if missing.is_empty() {
        println!(
            "all {} packages present",
            DEMO_PACKAGES.len() + TEST_PACKAGES.len()
        );
    } else {
        println!("installing: {}", missing.join(" "));
        apt_install(&missing)?;
    }

    stage("checking the Rust wasm32 target");
    let targets = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if targets
        .lines()
        .any(|l| l.trim() == "wasm32-unknown-unknown")
    {
        println!("wasm32-unknown-unknown present");
    } else {
        run_cmd(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))?;
    }

    stage("checking wasm-bindgen-cli");
    let version = lockfile_version("wasm-bindgen")?;
    let have = Command::new(wasm_bindgen_bin())
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if have.as_deref() == Some(&format!("wasm-bindgen {version}")) {
        println!("wasm-bindgen {version} present");
    } else {
        println!(
            "installing wasm-bindgen-cli {version} (matches Cargo.lock; takes a few minutes once)"
        );
        // No --locked: the registry mirror here lacks some of the CLI's locked versions.
        run_cmd(Command::new("cargo").args([
            "install",
            "wasm-bindgen-cli",
            "--version",
            &format!("={version}"),
        ]))?;
    }

    if purpose == Purpose::Test {
        ensure_python_tools()?;
    }
    if purpose != Purpose::Demo {
        ensure_fuzzing()?;
        stage("checking tauri-driver");
        let installed = output(Command::new("cargo").args(["install", "--list"]))?;
        // Both the binary and cargo's record of its version: either alone can be stale.
        if tauri_driver_bin().exists()
            && installed.contains(&format!("tauri-driver v{TAURI_DRIVER_VERSION}:"))
        {
            println!("tauri-driver {TAURI_DRIVER_VERSION} present");
        } else {
            run_cmd(Command::new("cargo").args([
                "install",
                "tauri-driver",
                "--version",
                &format!("={TAURI_DRIVER_VERSION}"),
            ]))?;
        }
    }
    Ok(())
}

fn deb_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn apt_install(packages: &[&str]) -> Result<()> {
    let is_root = output(Command::new("id").arg("-u"))?.trim() == "0";
    let prefix: &[&str] = if is_root { &[] } else { &["sudo", "-n"] };
    let apt = |args: &[&str]| -> Result<()> {
        let mut all: Vec<&str> = prefix.to_vec();
        all.push("apt-get");
        all.extend_from_slice(args);
        run_cmd(
            Command::new(all[0])
                .args(&all[1..])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
        .with_context(|| {
            format!(
                "apt-get needs root; run as root or allow passwordless sudo (packages: {})",
                packages.join(" ")
            )
        })
    };
    apt(&["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend_from_slice(packages);
    apt(&args)
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!("{:?} failed", cmd.get_program());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The version Cargo.lock pins for `package`.
pub fn lockfile_version(package: &str) -> Result<String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).context("reading Cargo.lock")?;
    let needle = format!("name = \"{package}\"\nversion = \"");
    let start = lock
        .find(&needle)
        .with_context(|| format!("{package} is not in Cargo.lock"))?
        + needle.len();
    let end = lock[start..].find('"').context("malformed Cargo.lock")?;
    Ok(lock[start..start + end].to_owned())
}

pub fn cargo_bin_dir() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from(".cargo"))
        .join("bin")
}

pub fn wasm_bindgen_bin() -> PathBuf {
    cargo_bin_dir().join("wasm-bindgen")
}

pub fn tauri_driver_bin() -> PathBuf {
    cargo_bin_dir().join("tauri-driver")
}

/// A shell snippet that unlocks a fresh gnome-keyring in the current D-Bus session, then
/// runs its arguments. Used under `dbus-run-session` with a private HOME.
pub const KEYRING_THEN_EXEC: &str = r#"eval "$(printf %s "$CLINICDESK_KEYRING_PASSWORD" | gnome-keyring-daemon --unlock --components=secrets)" >/dev/null; export GNOME_KEYRING_CONTROL; exec "$@""#;

/// A command that runs `program` in a desktop session: under Xvfb if there is no display,
/// and with a private D-Bus session and unlocked keyring if there is no session bus.
pub fn desktop_session_command(program: &std::path::Path) -> Result<Command> {
    let mut argv: Vec<std::ffi::OsString> = Vec::new();
    let headless =
        std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none();
    if headless {
        println!(
            "No display found: running the app under Xvfb (a virtual screen; nothing shows on this machine)."
        );
        argv.extend(["xvfb-run", "-a", "-s", "-screen 0 1280x800x24"].map(Into::into));
    }
    let no_bus = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none();
    let mut keyring_home = None;
    if no_bus {
        println!("No D-Bus session: starting one with a private, unlocked keyring for the demo.");
        let home = crate::target_dir().join("demo/keyring-home");
        std::fs::create_dir_all(&home)?;
        keyring_home = Some(home);
        argv.extend(
            [
                "dbus-run-session",
                "--",
                "sh",
                "-c",
                KEYRING_THEN_EXEC,
                "sh",
            ]
            .map(Into::into),
        );
    }
    argv.push(program.as_os_str().to_owned());
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    if let Some(home) = keyring_home {
        let xdg = home.join("xdg");
        std::fs::create_dir_all(&xdg)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700))?;
            std::fs::set_permissions(&xdg, std::fs::Permissions::from_mode(0o700))?;
        }
        cmd.env("HOME", &home)
            .env("XDG_RUNTIME_DIR", &xdg)
            .env("CLINICDESK_KEYRING_PASSWORD", "clinicdesk-demo");
    }
    Ok(cmd)
}
