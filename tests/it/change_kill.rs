//! "A change made in the app reaches the server exactly once, whatever instant the app is
//! killed at": the real app core in its own process (`outbox-torture write`) signs in as the
//! front desk and registers patients one after another, booking each, every change queued
//! with its event and sent at once, and is SIGKILLed at a random moment, 50 times over: in
//! the queue's transaction, in the request, between the server's answer and the queue's
//! delete. Then one clean run sends what is left, and the server's store is checked
//! directly: every registration and booking the core reported is there exactly once, no
//! patient is registered or booked twice, and the queue is empty.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::time::Duration;

use clinicdesk_tests::{ServerProcess, random_ms, torture, verify_chains};

const ROUNDS: usize = 50;

#[test]
fn sigkill_during_writes_and_sends_stores_every_change_exactly_once() {
    let server = ServerProcess::start();
    let app_dir = tempfile::tempdir().unwrap();
    let service = format!("ClinicDesk-test-{}", uuid::Uuid::new_v4());
    let user = "frontdesk";
    let password = server.seed.password(user).to_owned();
    let out = torture(&server, app_dir.path(), &service)
        .args(["enroll", &server.seed.enrollment_code, user, &password])
        .output()
        .unwrap();
    assert!(out.status.success(), "enroll failed");

    let mut made: Vec<String> = Vec::new();
    let mut booked: Vec<String> = Vec::new();
    let mut killed_while_writing = 0usize;
    for _ in 0..ROUNDS {
        let mut child = torture(&server, app_dir.path(), &service)
            .args(["write", user, &password])
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let (mut made, mut booked) = (Vec::new(), Vec::new());
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(id) = line.strip_prefix("made ") {
                    made.push(id.to_owned());
                } else if let Some(id) = line.strip_prefix("booked ") {
                    booked.push(id.to_owned());
                }
            }
            (made, booked)
        });
        // Sign-in takes a few hundred milliseconds (argon2id opens the cache); kills land
        // before, during and after it, then among the writes and sends.
        std::thread::sleep(Duration::from_millis(50) + random_ms(1500));
        assert!(
            child.try_wait().unwrap().is_none(),
            "the writer stopped on its own: it failed"
        );
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let (round, round_booked) = reader.join().unwrap();
        if !round.is_empty() {
            killed_while_writing += 1;
        }
        made.extend(round);
        booked.extend(round_booked);
    }
    assert!(
        killed_while_writing >= ROUNDS / 4,
        "too few kills landed among the writes ({killed_while_writing}); the test would prove little"
    );

    let out = torture(&server, app_dir.path(), &service)
        .args(["send", user, &password])
        .output()
        .unwrap();
    assert!(out.status.success(), "the clean send failed");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        "unsent 0",
        "{}",
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.starts_with("unsent:"))
            .collect::<Vec<_>>()
            .join("; ")
    );

    // Straight from the server's store: every reported registration once, none twice.
    let db = server.db();
    let mut stmt = db
        .prepare("SELECT id, name FROM patients WHERE name LIKE 'Synthetic Killtest-%'")
        .unwrap();
    let stored: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let ids: HashSet<&str> = stored.iter().map(|(id, _)| id.as_str()).collect();
    let names: HashSet<&str> = stored.iter().map(|(_, name)| name.as_str()).collect();
    assert_eq!(names.len(), stored.len(), "a registration was stored twice");
    for id in &made {
        assert!(
            ids.contains(id.as_str()),
            "a registration the app reported is not on the server"
        );
    }
    let versions: i64 = db
        .query_row(
            "SELECT count(*) FROM record_versions v JOIN patients p ON p.id = v.record_id
             WHERE p.name LIKE 'Synthetic Killtest-%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        versions,
        i64::try_from(stored.len()).unwrap(),
        "one first version per patient"
    );
    // Every reported booking once, for its patient; no patient booked twice.
    let mut stmt = db
        .prepare(
            "SELECT a.id, a.patient_id FROM appointments a JOIN patients p ON p.id = a.patient_id
             WHERE p.name LIKE 'Synthetic Killtest-%'",
        )
        .unwrap();
    let appointments: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let per_patient: HashSet<&str> = appointments.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(
        per_patient.len(),
        appointments.len(),
        "a booking was stored twice"
    );
    let appointment_ids: HashSet<&str> = appointments.iter().map(|(id, _)| id.as_str()).collect();
    for id in &booked {
        assert!(
            appointment_ids.contains(id.as_str()),
            "a booking the app reported is not on the server"
        );
    }
    assert!(
        !booked.is_empty(),
        "no booking was made: the test would prove little"
    );
    // The audit trail holds the device's events unbroken.
    verify_chains(&server);
    eprintln!(
        "change kill test: {ROUNDS} kills, {killed_while_writing} among the writes, {} bookings \
         reported, {} registrations reported, {} stored once each",
        booked.len(),
        made.len(),
        stored.len()
    );
}
