//! The app core's life cycle against the real server process, the real keychain and real
//! SQLCipher files: offline unlock and its time limit, switch user and sign out, the OS
//! lock signals on a real D-Bus, a lost keychain entry restored from the server's escrow,
//! and revocation wiping the device.

use std::sync::Arc;
use std::time::Duration;

use clinicdesk_app::config::Config;
use clinicdesk_app::core::Core;
use clinicdesk_app::os::clock::ManualClock;
use clinicdesk_app::secrets::keychain::KeychainError;
use clinicdesk_app::secrets::keys::DEVICE_SECRET;
use clinicdesk_protocol::ErrorCode;
use clinicdesk_protocol::app::{Phase, Revocation};
use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_tests::{ServerProcess, app_config, code_of, verify_chains};

/// 2026-11-23 12:00 UTC.
const START_MS: i64 = 1_795_435_200_000;

async fn enrolled(server: &ServerProcess, config: Config, clock: ManualClock) -> Arc<Core> {
    let core = Arc::new(Core::new(config, Arc::new(clock)).unwrap());
    core.enroll(&server.seed.enrollment_code, "Front desk 1")
        .await
        .unwrap();
    core
}

/// An enrolled workstation with the front desk signed in online.
async fn frontdesk_signed_in(server: &ServerProcess, config: &Config) -> Arc<Core> {
    let core = enrolled(server, config.clone(), ManualClock::new(START_MS)).await;
    server
        .sign_in(&core, "frontdesk", server.seed.password("frontdesk"))
        .await
        .unwrap();
    core
}

async fn drain(core: &Core) {
    while core.upload_once().await.unwrap() > 0 {}
    assert_eq!(core.status().outbox_pending, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn offline_unlock_within_the_clinics_limit_then_switch_user_and_sign_out() {
    let mut server = ServerProcess::start();
    let app_dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    let core = enrolled(
        &server,
        app_config(&server, app_dir.path(), None),
        clock.clone(),
    )
    .await;
    let password = server.seed.password("clinician").to_owned();
    server.sign_in(&core, "clinician", &password).await.unwrap();
    let list = core.appointments().await.unwrap();
    let patient = core
        .open_patient(list.appointments[0].patient_id)
        .await
        .unwrap();
    drain(&core).await;
    core.lock();

    // The server goes away. Unlock still needs the right password, checked locally.
    server.stop();
    let wrong = core.unlock("not-the-password").await.unwrap_err();
    assert_eq!(code_of(wrong), ErrorCode::InvalidCredentials);
    let status = core.unlock(&password).await.unwrap();
    assert_eq!(status.phase, Phase::Unlocked);
    assert!(status.offline_session);
    assert_eq!(status.online, Some(false));
    // PHI comes from this user's cache, and each view is still audited (offline).
    assert_eq!(core.open_patient(patient.id).await.unwrap(), patient);
    assert_eq!(core.appointments().await.unwrap(), list);
    let never_fetched = uuid::Uuid::from_u128(42);
    assert_eq!(
        code_of(core.open_patient(never_fetched).await.unwrap_err()),
        ErrorCode::ServerUnreachable
    );
    // lock (not yet sent when the server went), unlock, two views
    assert_eq!(core.status().outbox_pending, Some(4));
    assert_eq!(
        code_of(core.upload_once().await.unwrap_err()),
        ErrorCode::ServerUnreachable
    );

    // Switch user: another user with no cache on this device cannot work offline; the
    // clinician can, from the sign-in screen.
    assert_eq!(core.switch_user().phase, Phase::SignedOut);
    let frontdesk = server.seed.password("frontdesk").to_owned();
    assert_eq!(
        code_of(core.sign_in("frontdesk", &frontdesk).await.unwrap_err()),
        ErrorCode::ServerUnreachable
    );
    assert_eq!(
        core.sign_in("clinician", &password).await.unwrap().phase,
        Phase::Unlocked
    );
    core.lock();

    // Setting the clock back does not stretch the offline time: two hours on, it unlocks;
    // an hour back, the cache stays shut until the clock is right again (or the server is
    // reached); a few minutes back (time synchronisation) is tolerated.
    clock.advance(Duration::from_secs(2 * 3600));
    assert_eq!(core.unlock(&password).await.unwrap().phase, Phase::Unlocked);
    core.lock();
    clock.rewind(Duration::from_secs(3600));
    assert_eq!(
        code_of(core.unlock(&password).await.unwrap_err()),
        ErrorCode::OfflineTooLong
    );
    assert_eq!(core.status().phase, Phase::Locked);
    clock.advance(Duration::from_secs(3600 - 120));
    assert_eq!(core.unlock(&password).await.unwrap().phase, Phase::Unlocked);
    core.lock();
    clock.advance(Duration::from_secs(120));
    // A session kept open for hours counts too: the cache remembers the time of its last
    // view and of its lock, not only of the unlock.
    assert_eq!(core.unlock(&password).await.unwrap().phase, Phase::Unlocked);
    clock.advance(Duration::from_secs(3 * 3600));
    assert_eq!(core.open_patient(patient.id).await.unwrap(), patient);
    core.lock();
    clock.rewind(Duration::from_secs(2 * 3600));
    assert_eq!(
        code_of(core.unlock(&password).await.unwrap_err()),
        ErrorCode::OfflineTooLong,
        "two hours behind the last view, though after the unlock"
    );
    clock.advance(Duration::from_secs(2 * 3600));

    // The password alone opens the cache offline only within the 12 hours the sign-in's
    // second factor counts for (issue 22: someone who saw the password cannot unplug the
    // network and read the cache later without the second factor); the clinic's 72 hours
    // are the outer limit. Five hours in, it opens; past twelve, it does not.
    assert_eq!(core.unlock(&password).await.unwrap().phase, Phase::Unlocked);
    core.lock();
    clock.advance(Duration::from_secs(7 * 3600 + 60));
    assert_eq!(
        code_of(core.unlock(&password).await.unwrap_err()),
        ErrorCode::OfflineNeedsSecondFactor
    );
    assert_eq!(core.status().phase, Phase::Locked);

    // Past the clinic's maximum offline time (72 hours) the cache stays shut.
    clock.advance(Duration::from_secs(72 * 3600 + 60));
    assert_eq!(
        code_of(core.unlock(&password).await.unwrap_err()),
        ErrorCode::OfflineTooLong
    );
    assert_eq!(core.status().phase, Phase::Locked);

    // Back online: unlock signs in with the server again, and everything recorded
    // offline uploads, flagged offline, chained and signed.
    server.restart();
    let status = core.unlock(&password).await.unwrap();
    assert!(!status.offline_session);
    drain(&core).await;
    let events = server.audit_events();
    let offline_views = events
        .iter()
        .filter(|e| e.event.action == AuditAction::View && e.event.offline)
        .count();
    assert_eq!(offline_views, 3);
    let routes: Vec<&str> = events.iter().map(|e| e.event.route.as_str()).collect();
    assert!(routes.contains(&"switch_user"), "{routes:?}");

    // Sign out ends the session, records it and removes this user's cache.
    let cache_db = core.users().cache_path(server.user_id("clinician"));
    assert!(cache_db.exists());
    assert_eq!(core.sign_out().unwrap().phase, Phase::SignedOut);
    assert!(!cache_db.exists());
    assert!(!cache_db.parent().unwrap().exists());
    drain(&core).await;
    let last = server.audit_events().pop().unwrap();
    assert_eq!(last.event.action, AuditAction::Logout);
    // Offline there is nothing left to unlock for this user.
    server.stop();
    assert_eq!(
        code_of(core.sign_in("clinician", &password).await.unwrap_err()),
        ErrorCode::ServerUnreachable
    );
    server.restart();
    let counts = verify_chains(&server);
    assert_eq!(counts.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_device_destroys_its_secret_and_files_even_while_locked() {
    let server = ServerProcess::start();
    let app_dir = tempfile::tempdir().unwrap();
    let config = app_config(&server, app_dir.path(), None);
    let core = frontdesk_signed_in(&server, &config).await;
    core.appointments().await.unwrap();
    drain(&core).await;
    core.lock();
    let device_id = server.devices()[0].0;
    let cache_db = core.users().cache_path(server.user_id("frontdesk"));
    let outbox = core.paths().outbox.clone();
    assert!(cache_db.exists() && outbox.exists());

    server.revoke_device(device_id);
    // The locked app's uploader hears it first: the lock event (signed before the
    // revocation) is taken, the receipt says revoked, and the app wipes itself.
    let refused = core.upload_once().await.unwrap_err();
    assert_eq!(code_of(refused), ErrorCode::DeviceRevoked);
    assert_eq!(core.status().phase, Phase::Revoked);
    assert!(
        matches!(
            core.keychain().load_key(DEVICE_SECRET),
            Err(KeychainError::Missing)
        ),
        "the device secret survived the wipe"
    );
    let paths = core.paths().clone();
    for path in [
        &cache_db,
        &outbox,
        &paths.enrollment,
        &paths.device_key,
        &paths.recovery_key,
    ] {
        assert!(!path.exists(), "{} survived the wipe", path.display());
    }
    let mut wal = outbox.as_os_str().to_owned();
    wal.push("-wal");
    assert!(!std::path::Path::new(&wal).exists());
    assert!(!core.users().dir().exists());

    // A restarted app still shows the revocation, and signs nobody in.
    drop(core);
    let core = Core::new(config, clinicdesk_app::os::clock::system()).unwrap();
    assert_eq!(core.status().phase, Phase::Revoked);
    assert_eq!(
        code_of(core.sign_in("frontdesk", "x").await.unwrap_err()),
        ErrorCode::NotEnrolled
    );
}

/// An insider reads a chart offline, so the views exist only in this workstation's outbox;
/// an admin revokes the workstation meanwhile. When it reaches the server again, the app
/// hands in every event it recorded (signed before the revocation: the server stores them,
/// flagged) and only then wipes itself, and it says how many it handed in.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_workstation_hands_in_its_offline_reads_before_it_wipes_itself() {
    let mut server = ServerProcess::start();
    let app_dir = tempfile::tempdir().unwrap();
    let config = app_config(&server, app_dir.path(), None);
    let core = enrolled(&server, config.clone(), ManualClock::new(START_MS)).await;
    let password = server.seed.password("clinician").to_owned();
    server.sign_in(&core, "clinician", &password).await.unwrap();
    let list = core.appointments().await.unwrap();
    let patient = list.appointments[0].patient_id;
    core.open_patient(patient).await.unwrap();
    drain(&core).await;
    core.lock();
    let device_id = server.devices()[0].0;
    let mine = |events: Vec<clinicdesk_protocol::audit::SignedAuditEvent>| {
        events
            .into_iter()
            .filter(|e| e.event.device_id == device_id)
            .map(|e| e.event)
            .collect::<Vec<_>>()
    };
    let uploaded = mine(server.audit_events()).len();

    // Offline, from the cache: five reads of the chart, recorded only in the outbox.
    server.stop();
    assert!(core.unlock(&password).await.unwrap().offline_session);
    for _ in 0..5 {
        core.open_patient(patient).await.unwrap();
    }
    let waiting = core.status().outbox_pending.unwrap();
    assert!(
        waiting >= 7,
        "the lock, the unlock and five views: {waiting}"
    );
    server.revoke_device(device_id);
    server.restart();

    // Back in reach: the upload brings the news, and the app hands everything in first.
    let refused = core.upload_once().await.unwrap_err();
    assert_eq!(code_of(refused), ErrorCode::DeviceRevoked);
    let stored = mine(server.audit_events());
    assert_eq!(
        stored.len(),
        uploaded + waiting as usize,
        "every event reached the trail"
    );
    let offline_views = stored
        .iter()
        .filter(|e| e.action == AuditAction::View && e.offline && e.patient_id == Some(patient))
        .count();
    assert_eq!(offline_views, 5);
    let flagged = server
        .server_events()
        .into_iter()
        .filter(|e| e.event.action == AuditAction::ReceivedAfterRevocation)
        .count();
    assert_eq!(
        flagged, waiting as usize,
        "each is flagged as received after the revocation"
    );
    server.audit_verify();

    // Then it wiped itself, and says what it handed in.
    let status = core.status();
    assert_eq!(status.phase, Phase::Revoked);
    assert_eq!(
        status.revocation,
        Some(Revocation {
            handed_in: waiting,
            left_behind: 0,
        })
    );
    assert!(matches!(
        core.keychain().load_key(DEVICE_SECRET),
        Err(KeychainError::Missing)
    ));
    assert!(!core.paths().outbox.exists() && !core.users().dir().exists());
    drop(core);
    let core = Core::new(config, clinicdesk_app::os::clock::system()).unwrap();
    assert_eq!(core.status().revocation.map(|r| r.handed_in), Some(waiting));
}

/// A server the workstation does not trust is an error, never "offline" (issue 22: "a TLS or
/// pinning failure is an error shown as such"). Before, every transport error counted as
/// unreachable, so whoever could intercept the connection with another certificate turned
/// any unlock into an offline one. Here an impostor with a CA of its own answers on the
/// server's address: the unlock is refused as `server_not_trusted` and the app stays locked;
/// with the address silent (really unreachable) the offline unlock works as before.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_the_workstation_does_not_trust_is_an_error_not_a_way_offline() {
    let mut server = ServerProcess::start();
    let app_dir = tempfile::tempdir().unwrap();
    let config = app_config(&server, app_dir.path(), None);
    let core = enrolled(&server, config, ManualClock::new(START_MS)).await;
    let password = server.seed.password("clinician").to_owned();
    server.sign_in(&core, "clinician", &password).await.unwrap();
    core.lock();

    let _impostor = server.replace_with_impostor();
    let refused = core.unlock(&password).await.unwrap_err();
    assert_eq!(code_of(refused), ErrorCode::ServerNotTrusted);
    assert_eq!(core.status().phase, Phase::Locked);
    assert_eq!(core.status().online, Some(false), "not our server");
    assert_eq!(
        code_of(core.upload_once().await.unwrap_err()),
        ErrorCode::ServerNotTrusted
    );

    server.stop();
    let status = core.unlock(&password).await.unwrap();
    assert!(status.offline_session);
}

/// A sign-in waiting for its second factor holds the password (it opens the user's cache
/// after the second step). A lock drops it, zeroized with it: the next person at the
/// workstation cannot finish it, and no password stays in memory behind a locked app.
/// (A revocation drops it too; nothing outside the core can see that, the revoked screen
/// shows over any waiting step.)
#[tokio::test(flavor = "multi_thread")]
async fn a_lock_drops_a_sign_in_waiting_for_its_second_factor() {
    let server = ServerProcess::start();
    let app_dir = tempfile::tempdir().unwrap();
    let config = app_config(&server, app_dir.path(), None);
    let core = enrolled(&server, config, ManualClock::new(START_MS)).await;
    let password = server.seed.password("clinician").to_owned();
    let waiting = |phase| matches!(phase, Phase::SecondFactor | Phase::SetUpSecondFactor);

    let status = core.sign_in("clinician", &password).await.unwrap();
    assert!(waiting(status.phase), "{:?}", status.phase);
    let locked = core.lock();
    assert_eq!(
        locked.phase,
        Phase::SignedOut,
        "the waiting sign-in survived the lock"
    );
    assert!(locked.mfa_methods.is_empty());
    // Signing in again starts from the password, as for anyone.
    let status = core.sign_in("clinician", &password).await.unwrap();
    assert!(waiting(status.phase), "{:?}", status.phase);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_device_secret_comes_back_from_the_servers_escrow_and_nothing_unsent_is_lost() {
    let server = ServerProcess::start();
    let app_dir = tempfile::tempdir().unwrap();
    let config = app_config(&server, app_dir.path(), None);
    let core = frontdesk_signed_in(&server, &config).await;
    let device_id = server.devices()[0].0;
    let uploaded_before = server.audit_events().len();
    // Events recorded but not yet uploaded when the keychain loses the secret.
    core.appointments().await.unwrap();
    core.lock();
    let unsent = core.status().outbox_pending.unwrap();
    assert!(unsent >= 2, "a view and a lock wait in the outbox");
    let cache_db = core.users().cache_path(server.user_id("frontdesk"));
    // The recovery key is on disk only sealed: under the device secret, and in the signed-in
    // user's folder under their password.
    let copy = core.users().recovery_copy_path(server.user_id("frontdesk"));
    for path in [&core.paths().recovery_key, &copy] {
        let stored: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert!(stored.get("seed").is_none(), "{}", path.display());
    }
    core.keychain().delete(DEVICE_SECRET).unwrap();
    drop(core);

    // Restarted without the secret: nothing opens, and the app says what to do.
    let core = Core::new(config, clinicdesk_app::os::clock::system()).unwrap();
    assert_eq!(core.status().phase, Phase::DeviceSecretMissing);
    let password = server.seed.password("frontdesk");
    let refused = core.sign_in("frontdesk", password).await.unwrap_err();
    assert_eq!(code_of(refused), ErrorCode::KeychainUnavailable);
    assert_eq!(core.retry_keychain().phase, Phase::DeviceSecretMissing);
    // Only a password that opens a copy here goes on to the server: a wrong one does not,
    // nor the right password of a colleague who never signed in on this workstation.
    for (username, password) in [
        ("frontdesk", "not the password"),
        ("clinician", server.seed.password("clinician")),
    ] {
        let refused = core
            .recover_device_secret(username, password)
            .await
            .unwrap_err()
            .to_api();
        assert_eq!(
            (refused.code, refused.field.as_deref()),
            (ErrorCode::BadRequest, Some("recovery_password"))
        );
    }
    assert!(matches!(
        core.keychain().load_key(DEVICE_SECRET),
        Err(KeychainError::Missing)
    ));
    assert!(
        server
            .server_events()
            .iter()
            .all(|e| e.event.action != AuditAction::DeviceSecretReleased)
    );

    // The recovery sign-in asks for the second factor afresh, then the secret is back.
    let status = core
        .recover_device_secret("frontdesk", password)
        .await
        .unwrap();
    assert_eq!(status.phase, Phase::SecondFactor);
    let status = clinicdesk_tests::authenticator::pass_second_factor(
        &core,
        &server.authenticator,
        "frontdesk",
        status,
    )
    .await
    .unwrap();
    assert_eq!(status.phase, Phase::Unlocked);
    assert!(core.keychain().load_key(DEVICE_SECRET).is_ok());
    // The same cache file opened again (it was not replaced), and the outbox kept every
    // unsent event, now with the recovery sign-in after them.
    assert!(cache_db.exists());
    assert_eq!(core.status().outbox_pending, Some(unsent + 1));
    drain(&core).await;
    let events = server.audit_events();
    assert_eq!(
        events.len(),
        uploaded_before + usize::try_from(unsent).unwrap() + 1
    );
    assert_eq!(
        events
            .last()
            .map(|e| (e.event.action, e.event.route.as_str())),
        Some((AuditAction::Login, "recover_device_secret"))
    );
    verify_chains(&server);
    let released: Vec<_> = server
        .server_events()
        .into_iter()
        .filter(|e| e.event.action == AuditAction::DeviceSecretReleased)
        .collect();
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].event.resource_id, device_id.to_string());
    assert_eq!(released[0].event.actor_user_id, server.user_id("frontdesk"));
    // Once restored there is nothing to recover: a second attempt is refused.
    core.sign_out().unwrap();
    assert!(
        core.recover_device_secret("frontdesk", password)
            .await
            .is_err()
    );
}

/// A private D-Bus daemon for one test, so its signals reach no other test's app.
struct PrivateBus {
    child: std::process::Child,
    address: String,
}

impl PrivateBus {
    fn start() -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("dbus-daemon (installed with the desktop test packages)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Self {
            child,
            address: line.trim().to_owned(),
        }
    }

    async fn connect(&self) -> zbus::Connection {
        zbus::connection::Builder::address(self.address.as_str())
            .unwrap()
            .build()
            .await
            .unwrap()
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Emits the OS signals on a real D-Bus daemon of the test's own: logind and a
/// screensaver are not running here, so the test plays their part with the same
/// interfaces, members and arguments, and the app listens on that bus for both.
#[tokio::test(flavor = "multi_thread")]
async fn os_lock_suspend_and_screensaver_signals_lock_the_app() {
    use clinicdesk_app::os::lock_signals::{self, Buses};

    let server = ServerProcess::start();
    let app_dir = tempfile::tempdir().unwrap();
    let core = enrolled(
        &server,
        app_config(&server, app_dir.path(), None),
        ManualClock::new(START_MS),
    )
    .await;
    let password = server.seed.password("frontdesk").to_owned();
    server.sign_in(&core, "frontdesk", &password).await.unwrap();

    let private = PrivateBus::start();
    let bus = private.connect().await;
    let watch = lock_signals::watch(
        core.clone(),
        Buses {
            system: Some(bus.clone()),
            session: Some(bus.clone()),
            login_session: Some(
                zbus::zvariant::OwnedObjectPath::try_from("/org/freedesktop/login1/session/_31")
                    .unwrap(),
            ),
        },
    )
    .await
    .unwrap();
    let watcher = tokio::spawn(watch);
    let emitter = private.connect().await;

    async fn wait_for(core: &Core, phase: Phase) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while core.status().phase != phase {
            assert!(
                std::time::Instant::now() < deadline,
                "never reached {phase:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Signals that must not lock are each followed by one that must, of another cause.
    // The watcher handles a bus's signals in the order the bus delivered them (and a bus
    // delivers one sender's messages in the order sent), so the lock that comes proves the
    // signal before it was seen and passed over: had that one locked, the lock's cause in
    // the audit trail (checked at the end) would be its own.
    async fn emit(emitter: &zbus::Connection, path: &str, interface: &str, member: &str) {
        emitter
            .emit_signal(None::<&str>, path, interface, member, &())
            .await
            .unwrap();
    }
    async fn prepare_for_sleep(emitter: &zbus::Connection, start: bool) {
        emitter
            .emit_signal(
                None::<&str>,
                "/org/freedesktop/login1",
                "org.freedesktop.login1.Manager",
                "PrepareForSleep",
                &start,
            )
            .await
            .unwrap();
    }

    // Waking up (false) is not a reason to lock; our own session's lock is.
    prepare_for_sleep(&emitter, false).await;
    emit(
        &emitter,
        "/org/freedesktop/login1/session/_31",
        "org.freedesktop.login1.Session",
        "Lock",
    )
    .await;
    wait_for(&core, Phase::Locked).await;

    // Another OS user's session locking (fast user switching) is not ours: no lock; going
    // to sleep (true) is.
    core.unlock(&password).await.unwrap();
    emit(
        &emitter,
        "/org/freedesktop/login1/session/_32",
        "org.freedesktop.login1.Session",
        "Lock",
    )
    .await;
    prepare_for_sleep(&emitter, true).await;
    wait_for(&core, Phase::Locked).await;

    core.unlock(&password).await.unwrap();
    emitter
        .emit_signal(
            None::<&str>,
            "/org/freedesktop/ScreenSaver",
            "org.freedesktop.ScreenSaver",
            "ActiveChanged",
            &true,
        )
        .await
        .unwrap();
    wait_for(&core, Phase::Locked).await;
    watcher.abort();

    drain(&core).await;
    let locks: Vec<String> = server
        .audit_events()
        .iter()
        .filter(|e| e.event.action == AuditAction::Lock)
        .map(|e| e.event.route.clone())
        .collect();
    assert_eq!(locks, vec!["os_lock", "os_suspend", "os_screensaver"]);
}
