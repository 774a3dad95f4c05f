//! A stand-in for the desktop app's process, for the kill test (`tests/it/outbox_kill.rs`):
//! the real app core (keychain, SQLCipher outbox and cache, uploader) against a real
//! server, without a webview, so the test can SIGKILL it at any instant.
//!
//! `outbox-torture enroll CODE USER PASSWORD` (enroll, sign in with a second factor set up
//! then, lock) · `work USER PASSWORD` (sign in within the grant of that second factor, then
//! view patients and upload until killed; prints `viewed` after each view the core
//! returned) · `drain USER PASSWORD` (upload until the outbox is empty; prints `last_seq N`)
//! · `write USER PASSWORD` (sign in, then register patients and book each of them, until
//! killed, each change sent at once; prints `made ID` after each registration and
//! `booked ID` after each booking the core took) · `send USER PASSWORD` (sign in,
//! send the queue until it is empty; prints `unsent N`) · `endure view|write USER PASSWORD`
//! (for the server kill test, `tests/it/server_kill.rs`: sign in, print `ready`, then view
//! patients, or register and book them, sending changes and uploading after each, through
//! every failure of a server that is killed and restarted under it, until killed itself;
//! prints `viewed`, `made ID` and `booked ID` as `work` and `write` do). Configuration
//! comes from the same `CLINICDESK_*` variables as the app.

#![allow(clippy::print_stdout)] // the test reads this process's stdout

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clinicdesk_app::config::Config;
use clinicdesk_app::core::uploader;
use clinicdesk_app::core::{Booking, Core};
use clinicdesk_protocol::Phi;
use clinicdesk_protocol::app::Phase;
use clinicdesk_protocol::wire::{HumanName, PatientFields};
use clinicdesk_tests::authenticator::{Authenticator, pass_second_factor};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let data_dir = std::env::var("CLINICDESK_DATA_DIR").context("CLINICDESK_DATA_DIR")?;
    let config = Config::from_env(data_dir.into());
    let core = Arc::new(
        Core::new(config, clinicdesk_app::os::clock::system())
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let fail = |e: clinicdesk_app::AppError| anyhow::anyhow!("{}", e.to_api().code);
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["enroll", code, user, password] => {
            core.enroll(code, "Torture room").await.map_err(fail)?;
            let status = core.sign_in(user, password).await.map_err(fail)?;
            let app = Authenticator::default();
            let status = pass_second_factor(&core, &app, user, status)
                .await
                .map_err(fail)?;
            if status.phase != Phase::Unlocked {
                bail!("sign-in did not finish");
            }
            core.lock();
        }
        ["work", user, password] => {
            tokio::spawn(uploader::run_uploader(
                core.clone(),
                Duration::from_millis(10),
            ));
            signed_in_within_grant(&core, user, password).await?;
            let list = core.appointments().await.map_err(fail)?;
            println!("viewed");
            loop {
                for a in &list.appointments {
                    core.open_patient(a.patient_id).await.map_err(fail)?;
                    println!("viewed");
                }
            }
        }
        ["write", user, password] => {
            signed_in_within_grant(&core, user, password).await?;
            let doctor = core
                .practitioners()
                .await
                .map_err(fail)?
                .practitioners
                .first()
                .context("no practitioner")?
                .user_id;
            loop {
                let made = core.register_patient(new_patient()).await.map_err(fail)?;
                println!("made {}", made.record_id);
                let booked = core
                    .book(booking(made.record_id, doctor)?)
                    .await
                    .map_err(fail)?;
                println!("booked {}", booked.record_id);
            }
        }
        ["endure", mode @ ("view" | "write"), user, password] => {
            // The server is up now (the test waits for `ready` before its first kill).
            signed_in_within_grant(&core, user, password).await?;
            println!("ready");
            if *mode == "view" {
                endure_viewing(&core).await?;
            } else {
                endure_writing(&core).await?;
            }
        }
        ["send", user, password] => {
            signed_in_within_grant(&core, user, password).await?;
            core.send_changes().await.map_err(fail)?;
            let unsent = core.unsent_changes().map_err(fail)?.changes;
            // What held them, for the test's message: kinds and states, no content.
            for c in &unsent {
                eprintln!("unsent: {:?} {:?}", c.kind, c.state);
            }
            println!("unsent {}", unsent.len());
            core.lock();
            while core.upload_once().await.map_err(fail)? > 0 {}
        }
        ["drain", user, password] => {
            signed_in_within_grant(&core, user, password).await?;
            core.lock();
            while core.upload_once().await.map_err(fail)? > 0 {}
            let status = core.status();
            if status.outbox_pending != Some(0) {
                bail!("outbox not empty after draining");
            }
            println!("last_seq {}", core.outbox_last_seq().map_err(fail)?);
        }
        _ => bail!(
            "usage: outbox-torture enroll CODE USER PASSWORD | work | drain | write | send USER PASSWORD \
             | endure view|write USER PASSWORD"
        ),
    }
    Ok(())
}

/// A new synthetic patient of the kill tests, named `Synthetic Killtest-<random>`.
fn new_patient() -> PatientFields {
    let family = format!(
        "Killtest-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    PatientFields {
        name: Some(HumanName {
            given: "Synthetic".into(),
            family,
            preferred: String::new(),
        }),
        birth_date: Some("1990-01-01".into()),
        ..PatientFields::default()
    }
}

/// A booking of `patient` with `doctor` in a slot of its own: the wall clock's millisecond
/// (bookings follow each other, across the killed processes too) picks one of a million
/// working-day quarter hours from 2040 on, so no two bookings of a run overlap and a
/// booking refused on `start` can only have met itself, sent twice.
fn booking(patient: uuid::Uuid, doctor: uuid::Uuid) -> anyhow::Result<Booking> {
    let k = slot_index();
    let day = jiff::civil::date(2040, 1, 1)
        .checked_add(jiff::Span::new().days(i64::try_from(k / 32)?))?;
    Ok(Booking {
        patient_id: patient,
        practitioner_id: doctor,
        date: day.to_string(),
        time: format!("{:02}:{:02}", 9 + (k % 32) / 4, 15 * (k % 4)),
        duration_mins: 15,
        appointment_type: "routine".into(),
        reason: Phi::new("Synthetic kill test".into()),
    })
}

/// How long a worker of `endure` waits after a failure before its next request: short,
/// so that requests are in flight at most instants a kill can land on. (The app's own
/// loops back off for seconds; the test is about the server, not that schedule.)
const RETRY: Duration = Duration::from_millis(20);

/// Uploads one outbox batch and sends the change queue, whatever the server answers.
async fn send_what_waits(core: &Core) {
    if let Err(e) = core.upload_once().await {
        eprintln!("upload: {}", e.to_api().code);
        tokio::time::sleep(RETRY).await;
    }
    if let Err(e) = core.send_changes().await {
        eprintln!("send: {}", e.to_api().code);
        tokio::time::sleep(RETRY).await;
    }
}

/// `endure view`: today's patients opened one after another, for ever.
async fn endure_viewing(core: &Core) -> anyhow::Result<()> {
    let list = loop {
        match core.appointments().await {
            Ok(list) => break list,
            Err(e) => eprintln!("schedule: {}", e.to_api().code),
        }
        tokio::time::sleep(RETRY).await;
    };
    println!("viewed");
    if list.appointments.is_empty() {
        bail!("no appointments today to view");
    }
    loop {
        for a in &list.appointments {
            match core.open_patient(a.patient_id).await {
                Ok(_) => println!("viewed"),
                Err(e) => eprintln!("view: {}", e.to_api().code),
            }
            send_what_waits(core).await;
        }
    }
}

/// `endure write`: patients registered and booked one after another, for ever. A change
/// the server does not answer stays in the queue (the core took it: `made`, `booked`).
async fn endure_writing(core: &Core) -> anyhow::Result<()> {
    let doctor = loop {
        match core.practitioners().await {
            Ok(list) => {
                break list
                    .practitioners
                    .first()
                    .context("no practitioner")?
                    .user_id;
            }
            Err(e) => eprintln!("practitioners: {}", e.to_api().code),
        }
        tokio::time::sleep(RETRY).await;
    };
    loop {
        match core.register_patient(new_patient()).await {
            Ok(made) => {
                println!("made {}", made.record_id);
                match core.book(booking(made.record_id, doctor)?).await {
                    Ok(booked) => println!("booked {}", booked.record_id),
                    Err(e) => eprintln!("book: {}", e.to_api().code),
                }
            }
            Err(e) => eprintln!("register: {}", e.to_api().code),
        }
        send_what_waits(core).await;
    }
}

/// The wall clock's milliseconds, modulo a million: distinct for bookings made one after
/// another within a run (which lasts well under the 1,000 seconds of a wrap).
fn slot_index() -> u64 {
    #[allow(clippy::disallowed_methods)] // a unique, ordered number, not a time of the app
    let now = std::time::SystemTime::now();
    let ms = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    u64::try_from(ms % 1_000_000).unwrap_or(0)
}

/// Signs in with the password alone: the grant of the enrollment's second factor is in
/// the user's cache, so the server asks for no code.
async fn signed_in_within_grant(core: &Core, user: &str, password: &str) -> anyhow::Result<()> {
    let status = core
        .sign_in(user, password)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.to_api().code))?;
    if status.phase != Phase::Unlocked {
        bail!("the server asked for a second factor despite the grant");
    }
    Ok(())
}
