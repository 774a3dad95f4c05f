//! Password hashing with argon2id at OWASP's recommended parameters
//! (19 MiB memory, 2 iterations, 1 lane).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::error::ServerError;

fn argon2() -> Result<Argon2<'static>, ServerError> {
    let params = Params::new(19 * 1024, 2, 1, None)
        .map_err(|_| ServerError::Internal("argon2 parameters"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

pub fn hash(password: &str) -> Result<String, ServerError> {
    let salt_bytes = crate::random::bytes::<16>()?;
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|_| ServerError::Internal("argon2 salt"))?;
    Ok(argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|_| ServerError::Internal("argon2 hash"))?
        .to_string())
}

/// At most one argon2id computation per core at once. Each needs 19 MiB and a core for its
/// whole run, so more at once only make all of them finish later (fifty concurrent
/// provisionings would each wait for all fifty hashes) and hold their memory longer; the
/// queue is first come, first served.
fn turns() -> &'static tokio::sync::Semaphore {
    static TURNS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    TURNS.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(1, usize::from))
    })
}

/// Runs one argon2id computation on the blocking pool when its turn comes.
async fn in_turn<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ServerError> + Send + 'static,
) -> Result<T, ServerError> {
    let _turn = turns()
        .acquire()
        .await
        .map_err(|_| ServerError::Internal("password queue"))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| ServerError::Internal("password task"))?
}

/// [`hash`], off the async runtime and in turn.
pub async fn hash_in_turn(password: String) -> Result<String, ServerError> {
    in_turn(move || hash(&password)).await
}

/// [`verify`], off the async runtime and in turn.
pub async fn verify_in_turn(password: String, stored: String) -> Result<bool, ServerError> {
    in_turn(move || verify(&password, &stored)).await
}

pub fn verify(password: &str, stored: &str) -> Result<bool, ServerError> {
    let parsed = PasswordHash::new(stored).map_err(|_| ServerError::Internal("stored hash"))?;
    Ok(argon2()?
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

/// Shortest new password accepted (NIST SP 800-63B asks for at least 8; with a shared
/// workstation in the threat model we ask for more).
pub const MIN_LENGTH: usize = 12;

/// Whether a new password is acceptable: long enough, and not guessable by `zxcvbn`
/// (score 3 or more: beyond 10^8 guesses), whose bundled lists hold the most common
/// passwords from public breaches, words and names; `context` are the user's own words
/// (username, names, clinic), which a password must not lean on.
pub fn acceptable(password: &str, context: &[&str]) -> bool {
    if password.chars().count() < MIN_LENGTH {
        return false;
    }
    // Each name whole and word by word: `jo.billing` and `Jo Billing` give jo, billing.
    let mut words: Vec<String> = Vec::new();
    for part in context {
        words.push(part.to_lowercase());
        words.extend(
            part.split(|c: char| !c.is_alphanumeric())
                .filter(|w| w.chars().count() >= 2)
                .map(str::to_lowercase),
        );
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    zxcvbn::zxcvbn(password, &words).score() >= zxcvbn::Score::Three
}

/// A hash of no one's password, verified against when the user does not exist so that
/// an unknown username costs the same time as a wrong password.
pub fn dummy_hash() -> &'static str {
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$4jS3m4U8Dq1ExT8hK3ZIbq3mF6Y2mV7Wm2yQ6yQ3ZkQ"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_use_argon2id() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse", &h).unwrap());
        assert!(!verify("wrong horse", &h).unwrap());
    }

    #[test]
    fn weak_breached_and_personal_passwords_are_refused() {
        for weak in [
            "password1234",
            "123456789012",
            "qwertyuiopas",
            "iloveyou2026",
            "short",
            "robinfront2026",
        ] {
            assert!(
                !acceptable(weak, &["robin", "front", "robinfront"]),
                "{weak}"
            );
        }
        assert!(acceptable("violet-canoe-marble-47", &["robin"]));
    }

    #[test]
    fn dummy_hash_parses_and_matches_nothing() {
        assert!(!verify("", dummy_hash()).unwrap());
    }
}
