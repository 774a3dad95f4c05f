//! The real app core for the benchmarks that need one: enrolled against an in-process
//! server, its keys in the real keychain (`cargo xtask bench` provides a private D-Bus
//! session with an unlocked gnome-keyring), one user signed in with a TOTP second factor.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clinicdesk_app::config::Config;
use clinicdesk_app::core::Core;
use clinicdesk_protocol::app::Phase;
use clinicdesk_server::admin::seed;
use clinicdesk_server::sign_in::mfa::totp::TotpSecret;
use clinicdesk_server::time::SystemClock;

use crate::audit::Served;

fn unix_secs() -> u64 {
    #[allow(clippy::disallowed_methods)] // a TOTP code needs the wall clock, as a phone has
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A core on `data_dir` with its idle lock at `idle` (`None`: the clinic's policy).
pub(crate) fn new_core(
    s: &Served,
    data_dir: &Path,
    idle: Option<Duration>,
) -> anyhow::Result<Arc<Core>> {
    let service = format!("ClinicDesk-bench-{}", uuid::Uuid::new_v4());
    new_core_with(s, data_dir, idle, &service)
}

/// [`new_core`] keeping its keys under the keychain service `service`.
pub(crate) fn new_core_with(
    s: &Served,
    data_dir: &Path,
    idle: Option<Duration>,
    service: &str,
) -> anyhow::Result<Arc<Core>> {
    let config = Config {
        data_dir: data_dir.to_path_buf(),
        server_url: s.url.clone(),
        enrollment_ca: Some(s.ca_cert.clone()),
        idle_override: idle,
        keychain_service: service.to_owned(),
        upload_interval: Duration::from_millis(200),
    };
    Ok(Arc::new(Core::new(
        config,
        clinicdesk_app::os::clock::system(),
    )?))
}

/// Enrolls `core` with a fresh code and signs `username` in for the first time, setting up
/// their TOTP second factor as the app's screens do.
pub(crate) async fn enroll_and_sign_in(
    core: &Core,
    s: &Served,
    username: &str,
    password: &str,
) -> anyhow::Result<()> {
    enroll_in_and_sign_in(core, s, s.clinic_id, username, password).await
}

/// [`enroll_and_sign_in`] in another clinic of the same server.
pub(crate) async fn enroll_in_and_sign_in(
    core: &Core,
    s: &Served,
    clinic_id: uuid::Uuid,
    username: &str,
    password: &str,
) -> anyhow::Result<()> {
    let code =
        seed::issue_enrollment_code(&s.state.store, &SystemClock, clinic_id, 15, None).await?;
    core.enroll(&code, "Bench workstation")
        .await
        .context("enrolling (needs a Secret Service: run `cargo xtask bench`)")?;
    let status = core.sign_in(username, password).await?;
    anyhow::ensure!(
        status.phase == Phase::SetUpSecondFactor,
        "unexpected sign-in step"
    );
    let setup = core.start_totp_setup().await?;
    let totp = TotpSecret::from_base32(setup.secret_base32.expose())?;
    core.confirm_totp_setup(&totp.code_at(unix_secs())?).await?;
    Ok(())
}
