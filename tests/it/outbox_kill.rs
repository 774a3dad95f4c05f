//! "Killing the app at any instant loses nothing and duplicates nothing": the real app
//! core runs in its own process (`outbox-torture`), signing in, viewing patients and
//! uploading, and is SIGKILLed at a random moment, 50 times over. Then one clean run
//! drains the outbox, and the server's copy is checked independently: every device
//! chain complete, linked and signed, no event twice, every view the app returned there.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_tests::{ServerProcess, random_ms, torture, verify_chains};

const ROUNDS: usize = 50;

#[test]
fn sigkill_at_random_points_loses_and_duplicates_no_audit_event() {
    let server = ServerProcess::start();
    let app_dir = tempfile::tempdir().unwrap();
    let service = format!("ClinicDesk-test-{}", uuid::Uuid::new_v4());
    let user = "clinician";
    let password = server.seed.password(user).to_owned();
    let out = torture(&server, app_dir.path(), &service)
        .args(["enroll", &server.seed.enrollment_code, user, &password])
        .output()
        .unwrap();
    assert!(out.status.success(), "enroll failed");

    let mut viewed = 0usize;
    let mut killed_while_working = 0usize;
    for _ in 0..ROUNDS {
        let mut child = torture(&server, app_dir.path(), &service)
            .args(["work", user, &password])
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter(|l| l == "viewed")
                .count()
        });
        // Sign-in takes a few hundred milliseconds here (more on a loaded machine: it opens
        // the user's cache with argon2id to read the second-factor grant, then signs in);
        // kills land before, during and after it, in writes and in uploads.
        std::thread::sleep(Duration::from_millis(50) + random_ms(1000));
        assert!(
            child.try_wait().unwrap().is_none(),
            "the worker stopped on its own: it failed"
        );
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let n = reader.join().unwrap();
        if n > 0 {
            killed_while_working += 1;
        }
        viewed += n;
    }
    assert!(
        killed_while_working >= ROUNDS / 4,
        "too few kills landed after sign-in ({killed_while_working}); the test would prove little"
    );

    let out = torture(&server, app_dir.path(), &service)
        .args(["drain", user, &password])
        .output()
        .unwrap();
    assert!(out.status.success(), "drain failed");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last_seq: u64 = stdout
        .trim()
        .strip_prefix("last_seq ")
        .and_then(|n| n.parse().ok())
        .unwrap();

    let counts = verify_chains(&server);
    let device_id = server.devices()[0].0;
    assert_eq!(counts.len(), 1);
    assert_eq!(
        counts[&device_id], last_seq,
        "the server must hold exactly the events the device signed"
    );
    eprintln!(
        "kill test: {ROUNDS} kills, {killed_while_working} after sign-in, {viewed} views shown, \
         {last_seq} events signed and stored once"
    );
    let views_stored = server
        .audit_events()
        .iter()
        .filter(|e| e.event.action == AuditAction::View)
        .count();
    assert!(
        views_stored >= viewed,
        "{viewed} views were shown but only {views_stored} view events reached the server"
    );
}
