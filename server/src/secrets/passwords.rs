//! Password hashing with argon2id at OWASP's recommended parameters
//! (19 MiB memory, 2 iterations, 1 lane).

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::error::ServerError;

fn argon2() -> Result<Argon2<'static>, ServerError> {
    let params = Params::new(19 * 1024, 2, 1, None)
        .map_err(|_| ServerError::Internal("argon2 parameters"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Working memory kept between computations, one buffer per computation in flight (at
/// most one per core: see [`turns`]). Allocating 19 MiB afresh for every hash made glibc
/// grow its heap and, under load, spend whole seconds in page faults (fifty concurrent
/// provisionings took 0.7 s or 1.8 s from run to run); reused, they cost nothing.
fn with_memory<T>(
    blocks_needed: usize,
    work: impl FnOnce(&mut [Block]) -> T,
) -> Result<T, ServerError> {
    static SPARE: std::sync::Mutex<Vec<Vec<Block>>> = std::sync::Mutex::new(Vec::new());
    let spare = || {
        SPARE
            .lock()
            .map_err(|_| ServerError::Internal("argon2 memory"))
    };
    let mut blocks = spare()?.pop().unwrap_or_default();
    if blocks.len() < blocks_needed {
        blocks.resize(blocks_needed, Block::default());
    }
    let done = work(&mut blocks[..blocks_needed]);
    // Kept only as many as turns exist: computations outside them (seeding) add no
    // lasting memory.
    let mut spare = spare()?;
    if spare.len() < max_turns() {
        spare.push(blocks);
    }
    Ok(done)
}

/// Argon2 of `password` with `argon`'s parameters and `salt` into `out`.
fn compute(
    argon: &Argon2<'_>,
    password: &str,
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), ServerError> {
    with_memory(argon.params().block_count(), |blocks| {
        argon.hash_password_into_with_memory(password.as_bytes(), salt, out, blocks)
    })?
    .map_err(|_| ServerError::Internal("argon2 hash"))
}

/// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) of a new hash of `password`.
pub fn hash(password: &str) -> Result<String, ServerError> {
    let salt_bytes = crate::secrets::random::bytes::<16>()?;
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|_| ServerError::Internal("argon2 salt"))?;
    let argon = argon2()?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    compute(&argon, password, &salt_bytes, &mut out)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon.params())
            .map_err(|_| ServerError::Internal("argon2 parameters"))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|_| ServerError::Internal("argon2 hash"))?),
    };
    Ok(phc.to_string())
}

/// At most one argon2id computation per core at once. Each needs 19 MiB and a core for its
/// whole run, so more at once only make all of them finish later (fifty concurrent
/// provisionings would each wait for all fifty hashes) and hold their memory longer; the
/// queue is first come, first served.
fn turns() -> &'static tokio::sync::Semaphore {
    static TURNS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    TURNS.get_or_init(|| tokio::sync::Semaphore::new(max_turns()))
}

/// Computations at once: one per core.
fn max_turns() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
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

/// Whether `password` matches the stored argon2id PHC string, with the parameters stored in
/// it; the comparison takes the same time wherever the hashes differ.
pub fn verify(password: &str, stored: &str) -> Result<bool, ServerError> {
    let bad = || ServerError::Internal("stored hash");
    let parsed = PasswordHash::new(stored).map_err(|_| bad())?;
    if parsed.algorithm != Algorithm::Argon2id.ident() {
        return Err(bad());
    }
    let params = Params::try_from(&parsed).map_err(|_| bad())?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|_| bad())?
        .unwrap_or_default();
    let mut salt = [0u8; 64];
    let salt = parsed
        .salt
        .ok_or_else(bad)?
        .decode_b64(&mut salt)
        .map_err(|_| bad())?;
    let expected = parsed.hash.ok_or_else(bad)?;
    let argon = Argon2::new(Algorithm::Argon2id, version, params);
    let mut out = vec![0u8; expected.len()];
    compute(&argon, password, salt, &mut out)?;
    // `Output`'s equality is constant-time.
    Ok(Output::new(&out).map_err(|_| bad())? == expected)
}

/// Shortest new password accepted (NIST SP 800-63B asks for at least 8; with a shared
/// workstation in the threat model we ask for more).
pub const MIN_LENGTH: usize = 12;

/// Longest password accepted (NIST SP 800-63B asks for at least 64): a cap, so that
/// nobody makes the server hash or check a megabyte.
pub const MAX_LENGTH: usize = 128;

/// A new password's check, refusing an overlong one by `field`'s name and a guessable one
/// as `weak_password`; the guessability check runs on the blocking pool (it is CPU work
/// that grows with the password).
pub async fn check_new(
    password: &str,
    context: &[&str],
    field: &'static str,
) -> Result<(), ServerError> {
    if password.chars().count() > MAX_LENGTH {
        return Err(ServerError::BadRequest { field });
    }
    let password = password.to_owned();
    let context: Vec<String> = context.iter().map(|c| (*c).to_owned()).collect();
    let ok = tokio::task::spawn_blocking(move || {
        let context: Vec<&str> = context.iter().map(String::as_str).collect();
        acceptable(&password, &context)
    })
    .await
    .map_err(|_| ServerError::Internal("password check"))?;
    if ok {
        Ok(())
    } else {
        Err(ServerError::WeakPassword)
    }
}

/// Whether a new password is acceptable: long enough, and not guessable by `zxcvbn`
/// (score 3 or more: beyond 10^8 guesses), whose bundled lists hold the most common
/// passwords from public breaches, words and names; `context` are the user's own words
/// (username, names, clinic), which a password must not lean on.
pub fn acceptable(password: &str, context: &[&str]) -> bool {
    let length = password.chars().count();
    if !(MIN_LENGTH..=MAX_LENGTH).contains(&length) {
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

    /// Hashes made here and by the argon2 crate's own PHC functions verify with each other
    /// (stored hashes from before the working memory was reused keep working).
    #[test]
    fn hashes_match_the_argon2_crates_own() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let theirs = argon2()
            .unwrap()
            .hash_password(b"correct horse", &SaltString::encode_b64(&[7; 16]).unwrap())
            .unwrap()
            .to_string();
        assert!(verify("correct horse", &theirs).unwrap());
        assert!(!verify("correct horsf", &theirs).unwrap());
        let ours = hash("battery staple").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            argon2()
                .unwrap()
                .verify_password(b"battery staple", &parsed)
                .is_ok()
        );
        // Other parameters in a stored hash are honoured, not assumed.
        let lighter = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"x", &SaltString::encode_b64(&[9; 16]).unwrap())
        .unwrap()
        .to_string();
        assert!(lighter.contains("m=8192,t=1,p=1"));
        assert!(verify("x", &lighter).unwrap());
        assert!(!verify("y", &lighter).unwrap());
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
