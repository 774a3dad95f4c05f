//! `cargo xtask evidence [--data-dir DIR --key-dir DIR] [--scan HOST:PORT --ca FILE]`: the
//! compliance evidence report, `target/evidence/report.md` and `report.html`. For each
//! technical safeguard of 45 CFR 164.312 (the mapping is `tests/safeguards.toml`, beside the
//! tests), what implements it and the tests that prove it, each run now and its result
//! shown; a safeguard with no passing test is a gap. Then the live evidence an auditor asks
//! for, from the operator's own commands on a server's data: the clinic's policies in force,
//! second factors per user (the access review, every user), `audit verify`, and a TLS scan (testssl).
//! Without `--data-dir` that is a fresh synthetic demo clinic, and the scan is of a server
//! started on it; with one, the scan is of `--scan` (the live server, trusting `--ca`), or
//! left out. Exits non-zero when a safeguard is a gap or the trail does not verify.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::setup::{self, Purpose};
use crate::{build_host, build_ui, postgres, root, stage, target_dir, testrun};

/// Where the mapping lives, from the workspace root.
pub const MAPPING: &str = "tests/safeguards.toml";

#[derive(Debug, Deserialize)]
struct Mapping {
    safeguard: Vec<Safeguard>,
}

/// One safeguard of 164.312 as the mapping states it.
#[derive(Debug, Deserialize)]
pub struct Safeguard {
    pub section: String,
    pub title: String,
    pub features: Vec<String>,
    pub tests: Vec<String>,
}

/// A test as the mapping names it: `PACKAGE TARGET PATH`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TestId {
    pub package: String,
    /// `lib`, or a test binary's name.
    pub target: String,
    pub path: String,
}

impl TestId {
    pub fn parse(named: &str) -> Result<TestId> {
        let parts: Vec<&str> = named.split_whitespace().collect();
        let [package, target, path] = parts.as_slice() else {
            bail!("{named:?} is not `PACKAGE TARGET PATH`");
        };
        Ok(TestId {
            package: (*package).to_owned(),
            target: (*target).to_owned(),
            path: (*path).to_owned(),
        })
    }

    /// The function's name: the path's last segment.
    pub fn function(&self) -> &str {
        self.path.rsplit("::").next().unwrap_or(&self.path)
    }

    /// The package's directory in the workspace.
    pub fn package_dir(&self) -> Option<&'static str> {
        match self.package.as_str() {
            "clinicdesk-server" => Some("server"),
            "clinicdesk-tests" => Some("tests"),
            "clinicdesk-app" => Some("src-tauri"),
            "clinicdesk-protocol" => Some("protocol"),
            "clinicdesk-ui" => Some("ui"),
            _ => None,
        }
    }

    /// A server test that runs only against PostgreSQL.
    fn needs_postgres(&self) -> bool {
        self.package == "clinicdesk-server" && self.path.starts_with("postgres_only::")
    }
}

/// The mapping's safeguards, each test name checked for its form.
pub fn read_mapping(root: &Path) -> Result<Vec<Safeguard>> {
    let text = std::fs::read_to_string(root.join(MAPPING))
        .with_context(|| format!("reading {MAPPING}"))?;
    parse_mapping(&text)
}

fn parse_mapping(text: &str) -> Result<Vec<Safeguard>> {
    let mapping: Mapping = toml::from_str(text).with_context(|| format!("parsing {MAPPING}"))?;
    for s in &mapping.safeguard {
        for t in &s.tests {
            TestId::parse(t)?;
        }
    }
    Ok(mapping.safeguard)
}

/// Every test a mapping's text names (for `cargo xtask tidy`).
pub fn tests_named(text: &str) -> Result<Vec<TestId>> {
    parse_mapping(text)?
        .iter()
        .flat_map(|s| &s.tests)
        .map(|t| TestId::parse(t))
        .collect()
}

/// What became of a test in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Passed,
    Failed,
    /// Ignored, filtered out, or its binary did not build.
    NotRun,
}

impl Outcome {
    fn word(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "FAILED",
            Outcome::NotRun => "not run",
        }
    }
}

struct Options {
    data: Option<(PathBuf, PathBuf)>,
    scan: Option<(String, PathBuf)>,
}

fn options(args: &[String]) -> Result<Options> {
    let mut values: HashMap<&str, String> = HashMap::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let name = arg.as_str();
        if !matches!(name, "--data-dir" | "--key-dir" | "--scan" | "--ca") {
            bail!("unknown evidence option {name:?}");
        }
        values.insert(
            name,
            it.next().context("an option without its value")?.clone(),
        );
    }
    let pair = |a: &str, b: &str| -> Result<Option<(String, String)>> {
        match (values.get(a), values.get(b)) {
            (Some(x), Some(y)) => Ok(Some((x.clone(), y.clone()))),
            (None, None) => Ok(None),
            _ => bail!("{a} and {b} go together"),
        }
    };
    Ok(Options {
        data: pair("--data-dir", "--key-dir")?.map(|(d, k)| (d.into(), k.into())),
        scan: pair("--scan", "--ca")?.map(|(s, c)| (s, c.into())),
    })
}

pub fn evidence(args: &[String]) -> Result<()> {
    let options = options(args)?;
    let safeguards = read_mapping(&root())?;
    setup::ensure(Purpose::Test)?;
    build_ui()?;
    build_host()?;
    // For the test of verified TLS to PostgreSQL.
    stage("a throwaway PostgreSQL cluster on loopback");
    let cluster = postgres::Cluster::start()
        .map_err(|e| eprintln!("!!! PostgreSQL could not be started: {e:#}"))
        .ok();
    let outcomes = run_tests(&safeguards, cluster.as_ref())?;
    drop(cluster);

    stage("live evidence");
    let out = target_dir().join("evidence");
    std::fs::create_dir_all(&out)?;
    let live = live_evidence(&options, &out)?;
    let report = Report {
        safeguards: &safeguards,
        outcomes: &outcomes,
        live: &live,
    };
    std::fs::write(out.join("report.md"), report.markdown())?;
    std::fs::write(out.join("report.html"), report.html())?;
    let gaps = report.gaps();
    println!(
        "\nwrote {} and report.html: {} safeguard(s), {} gap(s); audit verify {}",
        out.join("report.md").display(),
        safeguards.len(),
        gaps.len(),
        if live.verified { "passed" } else { "FAILED" }
    );
    if !gaps.is_empty() || !live.verified {
        bail!("the evidence shows gaps: {}", gaps.join(", "));
    }
    Ok(())
}

/// Runs every mapped test inside the same harness as `cargo xtask test` (Xvfb, D-Bus, an
/// unlocked gnome-keyring), as one workspace-wide `cargo test` filtered to their exact paths,
/// so the build is the one `test` made; the PostgreSQL-only ones in a second run against the
/// cluster (the server's harness runs every test on PostgreSQL when given one).
fn run_tests(
    safeguards: &[Safeguard],
    cluster: Option<&postgres::Cluster>,
) -> Result<HashMap<TestId, Outcome>> {
    let mut ids: Vec<TestId> = Vec::new();
    for t in safeguards.iter().flat_map(|s| &s.tests) {
        let id = TestId::parse(t)?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let (on_postgres, here): (Vec<TestId>, Vec<TestId>) =
        ids.into_iter().partition(TestId::needs_postgres);
    let mut outcomes = HashMap::new();
    for (tests, postgres) in [(here, false), (on_postgres, true)] {
        if tests.is_empty() {
            continue;
        }
        stage(&format!(
            "{} mapped test(s){}",
            tests.len(),
            if postgres { " on PostgreSQL" } else { "" }
        ));
        let mut args: Vec<&str> = vec!["test", "--no-fail-fast", "--", "--exact"];
        args.extend(tests.iter().map(|t| t.path.as_str()));
        let mut cmd = testrun::cargo_in_keyring_session("evidence-harness", true, &args)?;
        cmd.env("CLINICDESK_TEST_HARNESS", "1")
            .env("CLINICDESK_TAURI_DRIVER", setup::tauri_driver_bin())
            .env("CLINICDESK_FHIR_PYTHON", setup::fhir_python())
            .env("CLINICDESK_SCHEMATHESIS", setup::schemathesis_bin());
        if postgres && let Some(cluster) = cluster {
            cmd.env("CLINICDESK_TEST_POSTGRES_URL", cluster.admin_url())
                .env("CLINICDESK_TEST_POSTGRES_CA", cluster.ca_file());
        }
        let said = run_echoing(&mut cmd)?;
        for id in tests {
            let outcome = outcome_in(&said, &id.path);
            outcomes.insert(id, outcome);
        }
    }
    Ok(outcomes)
}

/// Runs `cmd`, echoing its standard output, and returns it.
fn run_echoing(cmd: &mut Command) -> Result<String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the tests")?;
    let stdout = child.stdout.take().context("test output")?;
    let mut said = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        said.push_str(&line);
        said.push('\n');
    }
    child.wait()?;
    Ok(said)
}

/// A test's outcome from libtest's output (`test PATH ... ok`).
fn outcome_in(said: &str, path: &str) -> Outcome {
    let prefix = format!("test {path} ... ");
    said.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(Outcome::NotRun, |rest| match rest.trim() {
            "ok" => Outcome::Passed,
            r if r.starts_with("FAILED") => Outcome::Failed,
            _ => Outcome::NotRun,
        })
}

/// What the operator's commands said of a server's data.
struct Live {
    /// Where it came from, in words.
    source: String,
    policies: Vec<(String, String)>,
    /// The access review's header and rows (CSV; no PHI: users, roles, factors).
    users: Vec<Vec<String>>,
    verified: bool,
    verify_said: String,
    tls: TlsScan,
}

enum TlsScan {
    Skipped(String),
    Done {
        target: String,
        protocols: Vec<(String, String)>,
        by_severity: BTreeMap<String, usize>,
        /// MEDIUM and above: (severity, id, finding).
        notable: Vec<(String, String, String)>,
    },
}

fn server_binary() -> PathBuf {
    target_dir().join("debug/clinicdesk-server")
}

/// `clinicdesk-server ARGS --data-dir D --key-dir K`: (success, stdout, stderr). On a live
/// server's data the environment's `DATABASE_URL` (a PostgreSQL deployment) is kept; the
/// synthetic clinic is always the embedded store.
fn operator(args: &[&str], data: &Path, keys: &Path, live: bool) -> Result<(bool, String, String)> {
    let mut cmd = Command::new(server_binary());
    cmd.args(args)
        .arg("--data-dir")
        .arg(data)
        .arg("--key-dir")
        .arg(keys);
    if !live {
        cmd.env_remove("DATABASE_URL")
            .env_remove("DATABASE_MIGRATION_URL");
    }
    let out = cmd
        .output()
        .with_context(|| format!("running clinicdesk-server {}", args.join(" ")))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn live_evidence(options: &Options, out: &Path) -> Result<Live> {
    let live = options.data.is_some();
    let (data, keys, source) = match &options.data {
        Some((d, k)) => (
            d.clone(),
            k.clone(),
            format!("the server's data in {}", d.display()),
        ),
        None => {
            let demo = out.join("synthetic");
            if demo.exists() {
                std::fs::remove_dir_all(&demo)?;
            }
            let (d, k) = (demo.join("data"), demo.join("keys"));
            let (ok, _, err) = operator(&["seed"], &d, &k, false)?;
            if !ok {
                bail!("seeding the synthetic clinic failed: {err}");
            }
            (
                d,
                k,
                "a fresh synthetic demo clinic (`seed`): run with --data-dir for a live server"
                    .to_owned(),
            )
        }
    };
    let (ok, policies, err) = operator(&["audit", "policies"], &data, &keys, live)?;
    if !ok {
        bail!("audit policies failed: {err}");
    }
    let policies: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&policies).context("audit policies' JSON")?;
    let policies = policies
        .into_iter()
        .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
        .collect();
    let (ok, review, err) = operator(
        &["audit", "access-review", "--all-users"],
        &data,
        &keys,
        live,
    )?;
    if !ok {
        bail!("audit access-review failed: {err}");
    }
    let users = review.lines().map(csv_cells).collect();
    let (verified, said, err) = operator(&["audit", "verify"], &data, &keys, live)?;
    let verify_said = if verified { said } else { err };
    let tls = match (&options.scan, &options.data) {
        (Some((target, ca)), _) => scan(target, ca, out)?,
        (None, Some(_)) => {
            TlsScan::Skipped("no --scan HOST:PORT --ca FILE given for the live server".to_owned())
        }
        (None, None) => scan_a_server_on(&data, &keys, out)?,
    };
    Ok(Live {
        source,
        policies,
        users,
        verified,
        verify_said: verify_said.trim().to_owned(),
        tls,
    })
}

/// Starts `serve` on the data, scans it, stops it.
fn scan_a_server_on(data: &Path, keys: &Path, out: &Path) -> Result<TlsScan> {
    let mut child = Command::new(server_binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .arg("--key-dir")
        .arg(keys)
        .env("RUST_LOG", "warn")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the server to scan")?;
    let first = child
        .stdout
        .take()
        .and_then(|s| BufReader::new(s).lines().next())
        .transpose()?
        .unwrap_or_default();
    let scanned = first
        .strip_prefix("listening https://")
        .and_then(|rest| rest.split_once(" ca="))
        .map(|(addr, ca)| scan(addr, Path::new(ca), out));
    let _ = child.kill();
    let _ = child.wait();
    scanned.context("the server did not say where it listens")?
}

/// testssl against `target`, trusting `ca`: the protocols offered and the findings by
/// severity.
fn scan(target: &str, ca: &Path, out: &Path) -> Result<TlsScan> {
    stage(&format!("testssl {target}"));
    let json = out.join("testssl.json");
    let _ = std::fs::remove_file(&json);
    Command::new("testssl")
        .args(["--quiet", "--color", "0", "--warnings", "off", "--add-ca"])
        .arg(ca)
        .arg("--jsonfile")
        .arg(&json)
        .arg(target)
        .stdout(Stdio::null())
        .status()
        .context("testssl (Debian package testssl.sh, installed by the setup)")?;
    let findings: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&json).context("testssl's JSON")?)?;
    let text = |f: &serde_json::Value, k: &str| f[k].as_str().unwrap_or("").to_owned();
    let mut by_severity = BTreeMap::new();
    for f in &findings {
        *by_severity.entry(text(f, "severity")).or_insert(0) += 1;
    }
    let protocols = ["TLS1", "TLS1_1", "TLS1_2", "TLS1_3"]
        .iter()
        .map(|p| {
            let found = findings.iter().find(|f| f["id"] == *p);
            (
                (*p).to_owned(),
                found.map(|f| text(f, "finding")).unwrap_or_default(),
            )
        })
        .collect();
    let notable = findings
        .iter()
        .filter(|f| matches!(f["severity"].as_str(), Some("MEDIUM" | "HIGH" | "CRITICAL")))
        .map(|f| (text(f, "severity"), text(f, "id"), text(f, "finding")))
        .collect();
    Ok(TlsScan::Done {
        target: target.to_owned(),
        protocols,
        by_severity,
        notable,
    })
}

struct Report<'a> {
    safeguards: &'a [Safeguard],
    outcomes: &'a HashMap<TestId, Outcome>,
    live: &'a Live,
}

impl Report<'_> {
    fn outcome(&self, named: &str) -> Outcome {
        TestId::parse(named)
            .ok()
            .and_then(|id| self.outcomes.get(&id).copied())
            .unwrap_or(Outcome::NotRun)
    }

    /// How many of a safeguard's tests passed in this run.
    fn passed(&self, s: &Safeguard) -> usize {
        s.tests
            .iter()
            .filter(|t| self.outcome(t) == Outcome::Passed)
            .count()
    }

    /// A safeguard is shown met only when every test mapped to it passed in this run.
    fn met(&self, s: &Safeguard) -> bool {
        !s.tests.is_empty() && s.tests.iter().all(|t| self.outcome(t) == Outcome::Passed)
    }

    fn gaps(&self) -> Vec<String> {
        self.safeguards
            .iter()
            .filter(|s| !self.met(s))
            .map(|s| s.section.clone())
            .collect()
    }

    fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# ClinicDesk: HIPAA technical safeguards (45 CFR 164.312)\n"
        );
        let _ = writeln!(
            md,
            "Written by `cargo xtask evidence`. Each safeguard lists what implements it and the \
             tests that prove it, run for this report; a safeguard whose tests did not all pass \
             is a **gap**. The mapping is `{MAPPING}`.\n"
        );
        let _ = writeln!(md, "| Safeguard | | Tests passed |\n|---|---|---|");
        for s in self.safeguards {
            let passed = self.passed(s);
            let _ = writeln!(
                md,
                "| {} {} | {} | {passed} of {} |",
                s.section,
                s.title,
                if self.met(s) { "met" } else { "**GAP**" },
                s.tests.len()
            );
        }
        for s in self.safeguards {
            let _ = writeln!(md, "\n## {} {}\n", s.section, s.title);
            for f in &s.features {
                let _ = writeln!(md, "- {f}");
            }
            let _ = writeln!(md, "\n| Test | Result |\n|---|---|");
            for t in &s.tests {
                let _ = writeln!(md, "| `{t}` | {} |", self.outcome(t).word());
            }
        }
        let live = self.live;
        let _ = writeln!(md, "\n## Live evidence\n\nFrom {}.\n", live.source);
        let _ = writeln!(md, "### Policies in force\n\n| Policy | Value |\n|---|---|");
        for (k, v) in &live.policies {
            let _ = writeln!(md, "| {k} | {v} |");
        }
        let _ = writeln!(md, "\n### Users and their second factors (access review)\n");
        table_md(&mut md, &live.users);
        let _ = writeln!(
            md,
            "\n### `audit verify`\n\n{}: `{}`\n",
            if live.verified {
                "passed"
            } else {
                "**FAILED**"
            },
            live.verify_said.replace('\n', " / ")
        );
        let _ = writeln!(md, "### TLS scan (testssl)\n");
        match &live.tls {
            TlsScan::Skipped(why) => {
                let _ = writeln!(md, "Not run: {why}.");
            }
            TlsScan::Done {
                target,
                protocols,
                by_severity,
                notable,
            } => {
                let _ = writeln!(md, "Of `{target}`.\n\n| Protocol | Offered |\n|---|---|");
                for (p, f) in protocols {
                    let _ = writeln!(md, "| {p} | {f} |");
                }
                let counts: Vec<String> = by_severity
                    .iter()
                    .map(|(s, n)| format!("{s} {n}"))
                    .collect();
                let _ = writeln!(
                    md,
                    "\nFindings by severity: {}. (The test \
                     `transport_scan::testssl_finds_nothing_of_medium_severity_or_above` fails on \
                     any finding of MEDIUM or above but those it accepts, each with its reason.)\n",
                    counts.join(", ")
                );
                for (sev, id, finding) in notable {
                    let _ = writeln!(md, "- {sev} `{id}`: {finding}");
                }
            }
        }
        md
    }

    fn html(&self) -> String {
        let mut h = String::from(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>ClinicDesk: HIPAA \
             technical safeguards</title><style>body{font-family:sans-serif;max-width:60em;\
             margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #999;\
             padding:.2em .5em;text-align:left}.gap{color:#b00;font-weight:bold}\
             .met{color:#060}</style></head><body>",
        );
        let _ = write!(
            h,
            "<h1>ClinicDesk: HIPAA technical safeguards (45 CFR 164.312)</h1><p>Written by \
             <code>cargo xtask evidence</code>; the mapping is <code>{MAPPING}</code>. A \
             safeguard whose tests did not all pass in this run is a gap.</p><table><tr><th>\
             Safeguard</th><th></th><th>Tests passed</th></tr>"
        );
        for s in self.safeguards {
            let passed = self.passed(s);
            let (class, word) = if self.met(s) {
                ("met", "met")
            } else {
                ("gap", "GAP")
            };
            let _ = write!(
                h,
                "<tr><td>{} {}</td><td class=\"{class}\">{word}</td><td>{passed} of {}</td></tr>",
                esc(&s.section),
                esc(&s.title),
                s.tests.len()
            );
        }
        h.push_str("</table>");
        for s in self.safeguards {
            let _ = write!(h, "<h2>{} {}</h2><ul>", esc(&s.section), esc(&s.title));
            for f in &s.features {
                let _ = write!(h, "<li>{}</li>", esc(f));
            }
            h.push_str("</ul><table><tr><th>Test</th><th>Result</th></tr>");
            for t in &s.tests {
                let o = self.outcome(t);
                let class = if o == Outcome::Passed { "met" } else { "gap" };
                let _ = write!(
                    h,
                    "<tr><td><code>{}</code></td><td class=\"{class}\">{}</td></tr>",
                    esc(t),
                    o.word()
                );
            }
            h.push_str("</table>");
        }
        let live = self.live;
        let _ = write!(
            h,
            "<h2>Live evidence</h2><p>From {}.</p><h3>Policies in force</h3><table>",
            esc(&live.source)
        );
        for (k, v) in &live.policies {
            let _ = write!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v));
        }
        h.push_str("</table><h3>Users and their second factors (access review)</h3><table>");
        for (i, row) in live.users.iter().enumerate() {
            let cell = if i == 0 { "th" } else { "td" };
            h.push_str("<tr>");
            for c in row {
                let _ = write!(h, "<{cell}>{}</{cell}>", esc(c));
            }
            h.push_str("</tr>");
        }
        let _ = write!(
            h,
            "</table><h3>audit verify</h3><p class=\"{}\">{}</p><pre>{}</pre><h3>TLS scan \
             (testssl)</h3>",
            if live.verified { "met" } else { "gap" },
            if live.verified { "passed" } else { "FAILED" },
            esc(&live.verify_said)
        );
        match &live.tls {
            TlsScan::Skipped(why) => {
                let _ = write!(h, "<p>Not run: {}.</p>", esc(why));
            }
            TlsScan::Done {
                target,
                protocols,
                by_severity,
                notable,
            } => {
                let _ = write!(h, "<p>Of <code>{}</code>.</p><table>", esc(target));
                for (p, f) in protocols {
                    let _ = write!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(p), esc(f));
                }
                h.push_str("</table><p>Findings by severity: ");
                let counts: Vec<String> = by_severity
                    .iter()
                    .map(|(s, n)| format!("{} {n}", esc(s)))
                    .collect();
                h.push_str(&counts.join(", "));
                h.push_str(".</p><ul>");
                for (sev, id, finding) in notable {
                    let _ = write!(
                        h,
                        "<li>{} <code>{}</code>: {}</li>",
                        esc(sev),
                        esc(id),
                        esc(finding)
                    );
                }
                h.push_str("</ul>");
            }
        }
        h.push_str("</body></html>\n");
        h
    }
}

/// The cells of one CSV line as the server writes them (RFC 4180: a cell in double quotes
/// may hold commas, and `""` is a quote).
fn csv_cells(line: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        let cell = cells.last_mut().expect("one cell at least");
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => cells.push(String::new()),
            (c, _) => cell.push(c),
        }
    }
    cells
}

/// A Markdown table of CSV rows, the first its header.
fn table_md(md: &mut String, rows: &[Vec<String>]) {
    let Some(header) = rows.first() else {
        md.push_str("(none)\n");
        return;
    };
    let _ = writeln!(md, "| {} |", header.join(" | "));
    let _ = writeln!(md, "|{}", "---|".repeat(header.len()));
    for row in &rows[1..] {
        let cells: Vec<String> = row.iter().map(|c| c.replace('|', "/")).collect();
        let _ = writeln!(md, "| {} |", cells.join(" | "));
    }
}

/// Text for HTML.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mapping_parses_and_names_tests_in_packages_of_this_workspace() {
        let safeguards = read_mapping(&root()).unwrap();
        let sections: Vec<&str> = safeguards.iter().map(|s| s.section.as_str()).collect();
        for needed in [
            "164.312(a)(2)(i)",
            "164.312(a)(2)(ii)",
            "164.312(a)(2)(iii)",
            "164.312(a)(2)(iv)",
            "164.312(b)",
            "164.312(c)(1)",
            "164.312(d)",
            "164.312(e)(1)",
        ] {
            assert!(sections.contains(&needed), "{needed} is not in the mapping");
        }
        for t in safeguards.iter().flat_map(|s| &s.tests) {
            assert!(TestId::parse(t).unwrap().package_dir().is_some(), "{t}");
        }
    }

    #[test]
    fn csv_cells_keep_quoted_commas_and_quotes() {
        assert_eq!(
            csv_cells(r#"admin,"Pat, ""Admin"" (demo)",admin,none"#),
            ["admin", r#"Pat, "Admin" (demo)"#, "admin", "none"]
        );
        assert_eq!(csv_cells("a,,b"), ["a", "", "b"]);
    }

    #[test]
    fn outcomes_are_read_from_libtest_and_a_test_not_seen_is_not_run() {
        let said = "running 3 tests\ntest a::one ... ok\ntest a::two ... FAILED\n\
                    test a::three ... ignored\n";
        assert_eq!(outcome_in(said, "a::one"), Outcome::Passed);
        assert_eq!(outcome_in(said, "a::two"), Outcome::Failed);
        assert_eq!(outcome_in(said, "a::three"), Outcome::NotRun);
        assert_eq!(outcome_in(said, "a::on"), Outcome::NotRun);
        assert_eq!(outcome_in(said, "a::four"), Outcome::NotRun);
    }

    #[test]
    fn a_safeguard_is_met_only_when_every_test_of_it_passed() {
        let safeguards = vec![
            Safeguard {
                section: "164.312(b)".into(),
                title: "Audit controls".into(),
                features: vec!["<signed> & chained".into()],
                tests: vec!["p it a::one".into(), "p it a::two".into()],
            },
            Safeguard {
                section: "164.312(d)".into(),
                title: "Authentication".into(),
                features: vec![],
                tests: vec!["p it a::one".into()],
            },
            Safeguard {
                section: "164.312(e)(1)".into(),
                title: "Transmission".into(),
                features: vec![],
                tests: vec![],
            },
        ];
        let mut outcomes = HashMap::new();
        outcomes.insert(TestId::parse("p it a::one").unwrap(), Outcome::Passed);
        outcomes.insert(TestId::parse("p it a::two").unwrap(), Outcome::Failed);
        let live = Live {
            source: "a test".into(),
            policies: vec![("idle_timeout_secs".into(), "900".into())],
            users: vec![vec!["username".into()], vec!["clinician".into()]],
            verified: true,
            verify_said: "audit trail verified".into(),
            tls: TlsScan::Skipped("not asked".into()),
        };
        let report = Report {
            safeguards: &safeguards,
            outcomes: &outcomes,
            live: &live,
        };
        assert_eq!(report.gaps(), vec!["164.312(b)", "164.312(e)(1)"]);
        let md = report.markdown();
        assert!(
            md.contains("| 164.312(d) Authentication | met | 1 of 1 |"),
            "{md}"
        );
        assert!(
            md.contains("| 164.312(b) Audit controls | **GAP** | 1 of 2 |"),
            "{md}"
        );
        assert!(md.contains("| `p it a::two` | FAILED |"), "{md}");
        assert!(md.contains("| username |\n|---|\n| clinician |\n"), "{md}");
        let html = report.html();
        assert!(
            html.contains("&lt;signed&gt; &amp; chained"),
            "HTML is escaped"
        );
        assert!(!html.contains("<signed>"));
    }
}
