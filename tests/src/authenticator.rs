//! The test users' authenticator app: it keeps the TOTP secret each user set up (from the
//! base32 the app showed) and gives codes as a person would read them, never one the
//! server has already accepted (it waits for the next step when it must).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clinicdesk_app::AppError;
use clinicdesk_app::core::Core;
use clinicdesk_app::net::client::CodeMethod;
use clinicdesk_protocol::app::{AppStatus, Phase};
use totp_rs::{Algorithm, Builder, Secret};

const STEP_SECS: u64 = 30;

#[derive(Default)]
pub struct Authenticator {
    /// username → (secret, last step used)
    apps: Mutex<HashMap<String, (Vec<u8>, u64)>>,
}

fn unix_secs() -> u64 {
    #[allow(clippy::disallowed_methods)]
    let now = SystemTime::now();
    now.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

impl Authenticator {
    pub fn add(&self, username: &str, secret_base32: &str) {
        let secret = Secret::try_from_base32(secret_base32).unwrap();
        self.apps
            .lock()
            .unwrap()
            .insert(username.to_owned(), (secret.as_bytes().to_vec(), 0));
    }

    pub fn has(&self, username: &str) -> bool {
        self.apps.lock().unwrap().contains_key(username)
    }

    /// A code the server has not seen: the current step's, or the next one's when the
    /// current one was used (the server accepts one step either way). Never the previous
    /// step's: a step boundary between here and the server would make it stale.
    pub fn code(&self, username: &str) -> String {
        loop {
            let now_step = unix_secs() / STEP_SECS;
            {
                let mut apps = self.apps.lock().unwrap();
                let (secret, last) = apps.get_mut(username).expect("the user set up TOTP");
                let step = (*last + 1).max(now_step);
                if step <= now_step + 1 {
                    *last = step;
                    let totp = Builder::new()
                        .with_algorithm(Algorithm::SHA1)
                        .with_digits(6)
                        .with_step_duration(STEP_SECS)
                        .with_secret(secret.clone())
                        .build()
                        .unwrap();
                    return totp.generate(step * STEP_SECS).to_string();
                }
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// After a password step: the second factor from the user's authenticator, set up on the
/// first sign-in. Returns the status the app reached.
pub async fn pass_second_factor(
    core: &Core,
    authenticator: &Authenticator,
    username: &str,
    status: AppStatus,
) -> Result<AppStatus, AppError> {
    match status.phase {
        Phase::SetUpSecondFactor => {
            let setup = core.start_totp_setup().await?;
            authenticator.add(username, setup.secret_base32.expose());
            let code = authenticator.code(username);
            let done = core.confirm_totp_setup(&code).await?;
            assert_eq!(done.recovery_codes.len(), 10);
            Ok(done.status)
        }
        Phase::SecondFactor => {
            let code = authenticator.code(username);
            core.submit_second_factor(CodeMethod::Totp, &code).await
        }
        _ => Ok(status),
    }
}
