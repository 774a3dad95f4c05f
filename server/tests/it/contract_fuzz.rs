//! schemathesis (from PyPI; `cargo xtask test` installs it and names it in
//! `CLINICDESK_SCHEMATHESIS`) generates requests from the server's own `/openapi.json` and
//! sends them as each role (each in a clinic of its own) and as nobody: no answer may be a
//! server error, and every documented answer must match its schema. Its stateful phase also
//! sends sequences along the spec's links and those it infers; each role's session must
//! outlive its run (else the run was answered 401 from some point on, as the runs after the
//! admin's were while they shared a clinic and the admin's revoked its workstation). A last
//! run follows only the record's stated links as the front desk: register a patient, read
//! it and its history, change it, then change it again on the version before (`conflict`),
//! each step found in the run's HAR file. Bounded: a fixed number of examples per
//! operation, one worker, a fixed seed (a failure can be replayed).

use std::path::PathBuf;

use serde_json::json;

use crate::harness::{SignedIn, TestServer, captured_logs};

/// The server's "request failed" log lines (an answer of 500 names its cause there), the
/// last twenty.
fn failed_requests(logs: &std::sync::Mutex<Vec<u8>>) -> String {
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    let failed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("request failed"))
        .collect();
    failed[failed.len().saturating_sub(20)..].join("\n")
}

/// The operations that may end the caller's own session.
const SESSION_ENDING: [&str; 4] = [
    "/v1/devices/{device_id}/revoke",
    "/v1/users/{user_id}/deactivate",
    "/v1/users/{user_id}/role",
    "/v1/users/{user_id}/mfa/reset",
];

/// Which operations a run sends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Paths {
    ButSessionEnding,
    SessionEnding,
    /// The patient record's routes, along the links the document states only.
    RecordSequences,
}

/// Requests per operation and role.
const EXAMPLES: &str = "25";

fn schemathesis() -> PathBuf {
    std::env::var_os("CLINICDESK_SCHEMATHESIS")
        .map(PathBuf::from)
        .expect("CLINICDESK_SCHEMATHESIS is unset: run under `cargo xtask test`, which installs schemathesis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_off_its_schema() {
    let st = schemathesis();
    // The cause a server error was logged with, for the failure message.
    let logs = captured_logs();
    let server = TestServer::start().await;
    // Each role in a clinic of its own: the stateful phase follows links from what a list
    // answers (users, devices) to what changes them, so an admin's run may deactivate users
    // or revoke devices, which in a shared clinic would end the other roles' sessions and
    // leave their runs answered 401 throughout (as they were before this was so).
    let mut tokens = Vec::new();
    for (clinic, who) in [(0xF0, "admin"), (0xF1, "frontdesk"), (0xF2, "clinician")] {
        let signed_in = server.signed_in(clinic, who).await;
        tokens.push((who, signed_in.login.session_token.expose().to_owned()));
    }
    // A billing user too, so that every role is exercised.
    let SignedIn { device, login, .. } = server.signed_in(0xF3, "admin").await;
    let (status, body) = server
        .post(
            "/v1/users",
            Some(login.session_token.expose()),
            json!({
                "username": "fuzz.billing",
                "display_name": "Fuzz Billing (synthetic)",
                "role": "billing",
                "password": "correct horse battery staple fuzz",
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let billing = device
        .first_login(
            &server,
            "fuzz.billing",
            "correct horse battery staple fuzz",
            "saffron-glacier-tundra-19",
        )
        .await;
    tokens.push(("billing", billing.session_token.expose().to_owned()));
    // The operator, whose one route (provisioning) answers 200, 201, 400 or 409.
    let (_, operator) = clinicdesk_server::admin::operator::create_operator_token(
        &server.store,
        &server.clock,
        "schemathesis",
    )
    .await
    .unwrap();
    tokens.push(("operator", operator));
    tokens.push(("nobody", String::new()));

    // Every role's run leaves out what ends the caller's own session (an admin may revoke
    // their own workstation, or deactivate, demote or reset themselves); then the admin's
    // again sends only those, and the front desk's again follows the record's own links.
    let mut runs: Vec<(&str, String, Paths)> = tokens
        .into_iter()
        .map(|(who, token)| (who, token, Paths::ButSessionEnding))
        .collect();
    let token_of = |who: &str| runs.iter().find(|r| r.0 == who).unwrap().1.clone();
    let (admin, front_desk) = (token_of("admin"), token_of("frontdesk"));
    runs.push(("admin (session-ending)", admin, Paths::SessionEnding));
    runs.push((
        "frontdesk (record sequences)",
        front_desk,
        Paths::RecordSequences,
    ));

    let work = tempfile::tempdir().unwrap();
    let ca = work.path().join("ca.pem");
    std::fs::write(&ca, &server.ca_pem).unwrap();
    // Only the links the document states (schemathesis infers more, from ids in answers).
    let stated_links = work.path().join("stated-links.toml");
    std::fs::write(
        &stated_links,
        "[phases.stateful]\nmax-steps = 6\n\n[phases.stateful.inference]\nalgorithms = []\n",
    )
    .unwrap();
    let har = work.path().join("requests.har");
    for (who, token, paths) in runs {
        let mut cmd = tokio::process::Command::new(&st);
        if paths == Paths::RecordSequences {
            cmd.arg("--config-file").arg(&stated_links);
        }
        cmd.arg("run")
            .arg(format!("{}/openapi.json", server.url))
            .args(["--checks", "not_a_server_error,response_schema_conformance"])
            .args(["--seed", "20261123", "--workers", "1", "--no-color"])
            .args(["--generation-database", "none", "--request-timeout", "10"])
            // A refused request (403 before its body is read) ends its HTTP/1.1 connection
            // while the client may still be sending a large generated body; the client then
            // sees the connection close mid-write (seen once on CI). That is the client's
            // race, not an answer, so such a request is sent again; every answer is judged.
            .args(["--request-retries", "2"])
            // Signing out would end the session the rest of the run uses.
            .args(["--exclude-path", "/v1/auth/logout"])
            .arg("--tls-verify")
            .arg(&ca)
            .current_dir(work.path())
            .kill_on_drop(true);
        match paths {
            // Stateful too: sequences along the spec's links and those schemathesis infers.
            Paths::ButSessionEnding => {
                cmd.args(["--phases", "examples,coverage,fuzzing,stateful"]);
                cmd.args(["--max-examples", EXAMPLES]);
                for path in SESSION_ENDING {
                    cmd.args(["--exclude-path", path]);
                }
            }
            Paths::SessionEnding => {
                cmd.args(["--phases", "examples,coverage,fuzzing,stateful"]);
                cmd.args(["--max-examples", EXAMPLES]);
                // With the lists its stateful phase takes the users' and devices' ids from.
                for path in SESSION_ENDING.iter().chain(&["/v1/users", "/v1/devices"]) {
                    cmd.args(["--include-path", path]);
                }
            }
            // Register a patient, read it and its history, change it, then change it again
            // on the version before: `conflict`. Its requests and answers are kept (HAR).
            Paths::RecordSequences => {
                cmd.args(["--phases", "stateful", "--max-examples", "100"]);
                cmd.args(["--include-path-regex", "^/v1/patients"]);
                cmd.args(["--report", "har", "--report-har-path"]).arg(&har);
            }
        }
        if !token.is_empty() {
            cmd.args(["--header", &format!("Authorization: Bearer {token}")]);
        }
        let out = cmd.output().await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "schemathesis as {who}:\n{stdout}\n{}\nthe server's failed requests (this test \
             binary's, newest last):\n{}",
            String::from_utf8_lossy(&out.stderr),
            failed_requests(&logs)
        );
        // Every selected operation was exercised (the summary's "Selected: N/M", "Tested: N").
        let count = |label: &str| {
            stdout
                .lines()
                .find_map(|l| l.trim().strip_prefix(label))
                .and_then(|rest| rest.split('/').next())
                .and_then(|n| n.trim().parse::<u32>().ok())
        };
        let (selected, tested) = (count("Selected:"), count("Tested:"));
        // The stateful phase's links followed ("API Links: N covered / M selected / T total").
        let links = stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("API Links:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u32>().ok());
        eprintln!("schemathesis as {who}: links covered {links:?}");
        let least = match paths {
            Paths::ButSessionEnding => 30,
            Paths::SessionEnding => SESSION_ENDING.len() as u32 + 3,
            Paths::RecordSequences => 5,
        };
        // A stateful phase alone tests the operations the links join, not every one selected.
        let all_tested = tested == selected || paths == Paths::RecordSequences;
        assert!(
            selected.is_some_and(|n| n >= least) && tested.is_some() && all_tested,
            "schemathesis as {who} tested {tested:?} of {selected:?} operations:\n{stdout}"
        );
        if paths == Paths::RecordSequences {
            let sequences = record_sequences(&std::fs::read_to_string(&har).unwrap());
            eprintln!("the front desk's record sequences: {sequences:?}");
            assert!(
                sequences.read > 0 && sequences.changed > 0 && sequences.stale_refused > 0,
                "the stateful phase registered a patient, read it, changed it and was refused \
                 a change on the version before: {sequences:?}"
            );
        }
        // The session outlived the run, so no part of it was answered 401 for want of one.
        if !matches!(who, "operator" | "nobody") && paths == Paths::ButSessionEnding {
            let (status, body) = server.get("/v1/clinic", &token).await;
            assert_eq!(
                status, 200,
                "{who}'s session ended during its run: {body}\n{stdout}"
            );
        }
    }
}

/// The record a read is of: `/v1/patients/{id}` of its `/record` or `/history`.
fn read_of(path: &str) -> &str {
    ["/record", "/history"]
        .iter()
        .find_map(|suffix| path.strip_suffix(suffix))
        .unwrap_or(path)
}

/// What the stateful phase did with the patients it registered (`POST /v1/patients`
/// answered 201), from a HAR file of the run.
#[derive(Debug, Default)]
struct RecordSequences {
    registered: usize,
    /// Reads of a registered patient (its record or history) answered 200.
    read: usize,
    /// Changes of a registered patient answered 200.
    changed: usize,
    /// Changes answered 409 whose `If-Match` an earlier change of the same patient was
    /// answered 200 with: a change on a stale version, refused.
    stale_refused: usize,
}

fn record_sequences(har: &str) -> RecordSequences {
    let har: serde_json::Value = serde_json::from_str(har).unwrap();
    let mut seen = RecordSequences::default();
    let mut registered = std::collections::HashSet::new();
    // (patient path, If-Match) of the changes answered 200.
    let mut changed = std::collections::HashSet::new();
    for entry in har["log"]["entries"].as_array().into_iter().flatten() {
        let (request, response) = (&entry["request"], &entry["response"]);
        let method = request["method"].as_str().unwrap_or_default();
        let url = request["url"].as_str().unwrap_or_default();
        let Some(path) = url.find("/v1/patients").map(|at| &url[at..]) else {
            continue;
        };
        let path = path.split('?').next().unwrap_or_default().to_owned();
        let status = response["status"].as_u64().unwrap_or_default();
        let if_match = request["headers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|h| {
                h["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case("if-match"))
            })
            .and_then(|h| h["value"].as_str())
            .unwrap_or_default()
            .to_owned();
        match (method, status) {
            ("POST", 201) if path == "/v1/patients" => {
                let body: serde_json::Value =
                    serde_json::from_str(response["content"]["text"].as_str().unwrap_or("{}"))
                        .unwrap_or_default();
                if let Some(id) = body["id"].as_str() {
                    registered.insert(format!("/v1/patients/{id}"));
                    seen.registered += 1;
                }
            }
            ("GET", 200) if registered.contains(read_of(&path)) => seen.read += 1,
            ("PATCH", 200) if registered.contains(&path) => {
                seen.changed += 1;
                changed.insert((path, if_match));
            }
            ("PATCH", 409) if changed.contains(&(path, if_match)) => seen.stale_refused += 1,
            _ => {}
        }
    }
    seen
}
