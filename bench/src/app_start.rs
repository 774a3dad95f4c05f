//! `app_cold_start_ms` and `app_rss_mb`: the release desktop app, launched on an enrolled
//! workstation's data directory under the display `cargo xtask bench` provides (Xvfb), where
//! the front desk signed in before and switched user (their copy kept, as a shared
//! workstation is left), from the launch to its sign-in screen in the DOM and laid out (the
//! user-name field found over WebDriver), and then the resident memory of the app and every process under it (WebKit's
//! web and network processes counted). Against WebKit's own browser (MiniBrowser, the same
//! engine and version) launched the same way to a page with one field: the engine's floor.
//!
//! `app_sign_in_ms`: then the front desk signs in with user name and password (online,
//! against the server; the second factor is spared on this workstation for twelve hours
//! after the first sign-in), from the submit to the day's schedule painted (its table
//! found). Against the app core alone making the same sign-in and reading the same schedule,
//! without the UI.
//!
//! Both are timed through WebDriver, so both include a driver's session set-up: for the app,
//! tauri-driver starting WebKitWebDriver; for MiniBrowser, WebKitWebDriver already running,
//! plus one navigation. Each figure is the median of the launches. The RSS sums count the
//! shared libraries once per process, as `ps` does; the ratio is what the app adds. The
//! proportional set size (shared pages split among the processes) is printed beside it.
//!
//! Needs `CLINICDESK_BENCH_APP` (the release app) and `CLINICDESK_TAURI_DRIVER`, which
//! `cargo xtask bench` sets after building them; without them the metrics are skipped, and
//! the report says so.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clinicdesk_protocol::app::Phase;
use fantoccini::{Client, ClientBuilder, Locator};

use crate::app_core::{enroll_and_sign_in, new_core_with};
use crate::audit::{Served, runtime, served};
use crate::metrics::Scale;
use crate::report::Metric;

/// WebKit's browser as the distribution installs it with the WebDriver package.
const MINI_BROWSER: &str = "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser";
const WEBKIT_DRIVER: &str = "/usr/bin/WebKitWebDriver";

/// A driver in a process group of its own, killed with every process it started when
/// dropped (a WebKitWebDriver that tauri-driver started would otherwise live on).
struct Running(Child);

impl Running {
    fn spawn(cmd: &mut Command) -> std::io::Result<Self> {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0).spawn().map(Self)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let group = i32::try_from(self.0.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(group) = group {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

async fn wait_for_port(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        anyhow::ensure!(Instant::now() < deadline, "no driver on port {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// A WebDriver session on `port`. A driver answers on its port a moment before the one
/// behind it is ready (tauri-driver's WebKitWebDriver): a failed request is tried again
/// twice, and a real failure fails every time.
async fn session(port: u16, caps: serde_json::Value) -> anyhow::Result<Client> {
    let caps = caps.as_object().cloned().context("capabilities")?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => return Ok(client),
            Err(_) if attempt < 3 => tokio::time::sleep(Duration::from_secs(1)).await,
            Err(e) => return Err(e.into()),
        }
    }
}

async fn found(client: &Client, id: &str) -> anyhow::Result<()> {
    client
        .wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::Id(id))
        .await
        .with_context(|| format!("#{id} never appeared"))?;
    Ok(())
}

/// Process ids and parents, from `/proc`.
fn processes() -> Vec<(u32, u32)> {
    let mut all = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return all;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // `pid (comm) state ppid ...`: the name may hold spaces, so split after its `)`.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok());
        if let Some(ppid) = ppid {
            all.push((pid, ppid));
        }
    }
    all
}

/// `root` and every process under it.
fn tree_of(root: u32) -> Vec<u32> {
    let all = processes();
    let mut tree = vec![root];
    let mut i = 0;
    while let Some(&pid) = tree.get(i) {
        tree.extend(all.iter().filter(|(_, p)| *p == pid).map(|(c, _)| *c));
        i += 1;
    }
    tree
}

/// The sum over `root`'s tree of the `key:` line (kB) of each process's `/proc` `file`, in MB.
fn tree_memory_mb(root: u32, file: &str, key: &str) -> f64 {
    let kb: u64 = tree_of(root)
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok())
        .filter_map(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .sum();
    kb as f64 / 1024.0
}

/// Resident memory of the tree (shared pages counted in each process, as `ps` does), and
/// its proportional share (shared pages split among the processes that map them), in MB.
fn tree_rss_pss_mb(root: u32) -> (f64, f64) {
    (
        tree_memory_mb(root, "status", "VmRSS:"),
        tree_memory_mb(root, "smaps_rollup", "Pss:"),
    )
}

/// The process running `exe` under `ancestor`, if any.
fn descendant_running(ancestor: u32, exe: &Path) -> Option<u32> {
    tree_of(ancestor)
        .into_iter()
        .find(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == exe))
}

/// One launch of the app.
struct Launch {
    /// To the sign-in form.
    start_ms: f64,
    /// The app's tree's RSS and PSS on its sign-in screen.
    memory_mb: (f64, f64),
    /// From the sign-in's submit to the schedule's table.
    sign_in_ms: f64,
}

async fn type_into(client: &Client, id: &str, text: &str) -> anyhow::Result<()> {
    let field = client.find(Locator::Id(id)).await?;
    field.clear().await?;
    field.send_keys(text).await?;
    Ok(())
}

/// One launch of the app on `data_dir` (see [`Launch`]); it ends with the user switched
/// away again (their copy kept).
async fn launch_app(
    app: &Path,
    driver: &Path,
    s: &Served,
    data_dir: &Path,
    keychain_service: &str,
) -> anyhow::Result<Launch> {
    let port = free_port()?;
    let native = free_port()?;
    let tauri_driver = Running::spawn(
        Command::new(driver)
            .args([
                "--port",
                &port.to_string(),
                "--native-port",
                &native.to_string(),
            ])
            .args(["--native-driver", WEBKIT_DRIVER])
            .env("CLINICDESK_DATA_DIR", data_dir)
            .env("CLINICDESK_SERVER_URL", &s.url)
            .env("CLINICDESK_SERVER_CA", &s.ca_cert)
            .env("CLINICDESK_KEYCHAIN_SERVICE", keychain_service)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .context("tauri-driver")?;
    wait_for_port(port).await?;
    let caps = serde_json::json!({
        "browserName": "wry",
        "tauri:options": { "application": app },
    });
    let started = Instant::now();
    let client = session(port, caps).await?;
    found(&client, "login-username").await?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    // Settled: what the app holds once its first screen is up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = descendant_running(tauri_driver.0.id(), app).context("the app's process")?;
    let memory_mb = tree_rss_pss_mb(pid);
    type_into(&client, "login-username", "frontdesk").await?;
    type_into(&client, "login-password", &s.front_desk_password).await?;
    let submit = client.find(Locator::Id("login-submit")).await?;
    let signing_in = Instant::now();
    submit.click().await?;
    found(&client, "schedule-list").await?;
    let sign_in_ms = signing_in.elapsed().as_secs_f64() * 1000.0;
    // Switched away (the copy kept) for the next launch.
    client
        .find(Locator::Id("switch-user"))
        .await?
        .click()
        .await?;
    found(&client, "login-username").await?;
    client.close().await?;
    Ok(Launch {
        start_ms: ms,
        memory_mb,
        sign_in_ms,
    })
}

/// One launch of MiniBrowser to a page with one field: ms to the field, and its tree's RSS
/// and PSS in MB.
async fn launch_mini_browser(
    driver_port: u16,
    driver_pid: u32,
) -> anyhow::Result<(f64, (f64, f64))> {
    let caps = serde_json::json!({
        "browserName": "MiniBrowser",
        "webkitgtk:browserOptions": { "binary": MINI_BROWSER, "args": ["--automation"] },
    });
    let started = Instant::now();
    let client = session(driver_port, caps).await?;
    client
        .goto("data:text/html,<title>Sign in</title><input id=field>")
        .await?;
    found(&client, "field").await?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid =
        descendant_running(driver_pid, Path::new(MINI_BROWSER)).context("MiniBrowser's process")?;
    let mb = tree_rss_pss_mb(pid);
    client.close().await?;
    Ok((ms, mb))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or_default()
}

pub fn app_start(scale: Scale) -> anyhow::Result<Vec<Metric>> {
    let (Some(app), Some(driver)) = (
        std::env::var_os("CLINICDESK_BENCH_APP").map(PathBuf::from),
        std::env::var_os("CLINICDESK_TAURI_DRIVER").map(PathBuf::from),
    ) else {
        println!(
            "  SKIPPED: CLINICDESK_BENCH_APP and CLINICDESK_TAURI_DRIVER are not set (`cargo xtask bench` sets them)"
        );
        return Ok(Vec::new());
    };
    anyhow::ensure!(app.exists(), "{} is missing", app.display());
    let runs = scale.pick(3, 7);
    let rt = runtime()?;
    rt.block_on(async {
        let s = served().await?;
        // An enrolled workstation: the app opens on the sign-in screen, as every morning.
        // Its front desk signed in once (second factor set up) and switched user: their next
        // sign-in here is spared the second factor, as on a working morning. The core's own
        // sign-ins to the schedule are the sign-in's baseline.
        let dir = tempfile::tempdir()?;
        let keychain_service = format!("ClinicDesk-bench-{}", uuid::Uuid::new_v4());
        let core = new_core_with(&s, dir.path(), None, &keychain_service)?;
        enroll_and_sign_in(&core, &s, "frontdesk", &s.front_desk_password).await?;
        core.switch_user();
        let mut core_ms = Vec::new();
        for _ in 0..runs {
            let started = Instant::now();
            let status = core.sign_in("frontdesk", &s.front_desk_password).await?;
            let day = core.schedule(None).await?;
            core_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(status.phase == Phase::Unlocked, "{:?}", status.phase);
            anyhow::ensure!(!day.appointments.is_empty(), "an empty day");
            core.switch_user();
        }
        drop(core);

        let (mut app_ms, mut app_mb, mut app_sign_in_ms) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let launch = launch_app(&app, &driver, &s, dir.path(), &keychain_service).await?;
            app_ms.push(launch.start_ms);
            app_mb.push(launch.memory_mb);
            app_sign_in_ms.push(launch.sign_in_ms);
        }
        let port = free_port()?;
        let webkit_driver = Running::spawn(
            Command::new(WEBKIT_DRIVER)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .context("WebKitWebDriver")?;
        wait_for_port(port).await?;
        let (mut mini_ms, mut mini_mb) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let (ms, mb) = launch_mini_browser(port, webkit_driver.0.id()).await?;
            mini_ms.push(ms);
            mini_mb.push(mb);
        }
        let (ms, base_ms) = (median(app_ms), median(mini_ms));
        let (sign_in_ms, core_sign_in_ms) = (median(app_sign_in_ms), median(core_ms));
        let rss = |v: &[(f64, f64)]| median(v.iter().map(|m| m.0).collect());
        let pss = |v: &[(f64, f64)]| median(v.iter().map(|m| m.1).collect());
        let (mb, base_mb) = (rss(&app_mb), rss(&mini_mb));
        println!(
            "  proportional set size (shared pages split): app {:.0} MB, MiniBrowser {:.0} MB",
            pss(&app_mb),
            pss(&mini_mb)
        );
        Ok(vec![
            Metric::new(
                "app_cold_start_ms",
                ms,
                "ms",
                "minibrowser_start_ms",
                base_ms,
                "<= 1500",
                ms <= 1500.0,
            ),
            Metric::new(
                "app_sign_in_ms",
                sign_in_ms,
                "ms",
                "core_sign_in_ms",
                core_sign_in_ms,
                "<= 1500",
                sign_in_ms <= 1500.0,
            ),
            Metric::new(
                "app_rss_mb",
                mb,
                "MB",
                "minibrowser_rss_mb",
                base_mb,
                "<= 200",
                mb <= 200.0,
            ),
        ])
    })
}
