//! TOTP (RFC 6238) through `totp-rs`: SHA-1, 6 digits, 30-second steps, one step of skew
//! either way, the parameters every authenticator app understands. A code is accepted
//! only for a step later than the last one accepted, so an observed code cannot be
//! replayed (RFC 6238 §5.2).

use clinicdesk_protocol::mfa::TotpSetup;
use totp_rs::{Algorithm, Builder, Totp};
use zeroize::Zeroizing;

use crate::error::ServerError;

pub const STEP_SECS: u64 = 30;
const DIGITS: u8 = 6;
const ISSUER: &str = "ClinicDesk";

/// A 160-bit TOTP secret (the length RFC 4226 recommends).
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

impl TotpSecret {
    pub fn generate() -> Result<Self, ServerError> {
        Ok(Self(Zeroizing::new(
            crate::secrets::random::bytes::<20>()?.to_vec(),
        )))
    }

    pub fn from_bytes(bytes: Zeroizing<Vec<u8>>) -> Result<Self, ServerError> {
        if bytes.len() < 16 {
            return Err(ServerError::Internal("stored TOTP secret too short"));
        }
        Ok(Self(bytes))
    }

    /// A secret as an authenticator app holds it (the setup's base32).
    pub fn from_base32(text: &str) -> Result<Self, ServerError> {
        let secret = totp_rs::Secret::try_from_base32(text)
            .map_err(|_| ServerError::BadRequest { field: "secret" })?;
        Self::from_bytes(Zeroizing::new(secret.as_bytes().to_vec()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn totp(&self, account: Option<&str>) -> Result<Totp, ServerError> {
        let mut builder = Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(DIGITS)
            .with_skew(1)
            .with_step_duration(STEP_SECS)
            .with_secret(self.0.to_vec());
        if let Some(account) = account {
            builder = builder.with_account_name(account).with_issuer(Some(ISSUER));
        }
        builder
            .build()
            .map_err(|_| ServerError::Internal("TOTP parameters"))
    }

    /// What the user types into (or scans with) an authenticator app.
    pub fn setup(&self, username: &str, clinic_name: &str) -> Result<TotpSetup, ServerError> {
        // The otpauth label may not contain ':'; it is a label only, never checked.
        let account = format!("{username} ({clinic_name})").replace(':', " ");
        let totp = self.totp(Some(&account))?;
        Ok(TotpSetup {
            secret_base32: totp.secret().to_base32().into(),
            otpauth_uri: totp
                .to_url()
                .map_err(|_| ServerError::Internal("TOTP URI"))?
                .into(),
        })
    }

    /// The step of `code` if it is valid at `now_ms` (±1 step) and later than `last_step`.
    pub fn check(
        &self,
        code: &str,
        now_ms: i64,
        last_step: i64,
    ) -> Result<Option<i64>, ServerError> {
        let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        let now_secs = u64::try_from(now_ms.max(0) / 1000).unwrap_or(0);
        let step = self
            .totp(None)?
            .check(&code, now_secs)
            .and_then(|s| i64::try_from(s).ok());
        Ok(step.filter(|s| *s > last_step))
    }

    /// The code for the step containing `unix_secs` (tests and the demo helper).
    pub fn code_at(&self, unix_secs: u64) -> Result<String, ServerError> {
        Ok(self.totp(None)?.generate(unix_secs).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, through the same crate and parameters the server uses, with the
    /// algorithm and length the vectors name.
    #[test]
    fn rfc_6238_vectors() {
        let text = include_str!("../../../tests/data/rfc-6238.txt");
        let mut checked = 0;
        for block in text.split("\n\n").filter(|b| b.contains("TOTP =")) {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{name} = ")))
                    .unwrap()
                    .trim()
            };
            let algorithm = match field("MODE") {
                "SHA1" => Algorithm::SHA1,
                "SHA256" => Algorithm::SHA256,
                "SHA512" => Algorithm::SHA512,
                other => panic!("mode {other}"),
            };
            let expected = field("TOTP");
            let totp = Builder::new()
                .with_algorithm(algorithm)
                .with_digits(u8::try_from(expected.len()).unwrap())
                .with_step_duration(30)
                .with_secret(field("SECRET").as_bytes().to_vec())
                .build()
                .unwrap();
            let time: u64 = field("TIME").parse().unwrap();
            assert_eq!(totp.generate(time).to_string(), expected, "{block}");
            checked += 1;
        }
        assert_eq!(checked, 18);
    }

    #[test]
    fn codes_are_accepted_once_within_one_step_of_skew() {
        let secret = TotpSecret::generate().unwrap();
        let now_ms = 1_795_435_215_000; // 15 s into a step
        let now = u64::try_from(now_ms / 1000).unwrap();
        let step = i64::try_from(now / STEP_SECS).unwrap();
        let current = secret.code_at(now).unwrap();
        assert_eq!(secret.check(&current, now_ms, 0).unwrap(), Some(step));
        // Replay of the same step, or of any earlier one, is refused.
        assert_eq!(secret.check(&current, now_ms, step).unwrap(), None);
        let previous = secret.code_at(now - STEP_SECS).unwrap();
        assert_eq!(secret.check(&previous, now_ms, step).unwrap(), None);
        // The next step's code is accepted (clock skew), two steps away is not.
        let next = secret.code_at(now + STEP_SECS).unwrap();
        assert_eq!(secret.check(&next, now_ms, step).unwrap(), Some(step + 1));
        let far = secret.code_at(now + 2 * STEP_SECS).unwrap();
        if far != next {
            assert_eq!(secret.check(&far, now_ms, 0).unwrap(), None);
        }
        // Spaces are ignored; anything but six digits is refused.
        let spaced = format!("{} {}", &current[..3], &current[3..]);
        assert_eq!(secret.check(&spaced, now_ms, 0).unwrap(), Some(step));
        assert_eq!(secret.check("12345", now_ms, 0).unwrap(), None);
        assert_eq!(secret.check("+12345", now_ms, 0).unwrap(), None);
    }

    #[test]
    fn setup_gives_a_standard_uri() {
        let secret = TotpSecret::generate().unwrap();
        let setup = secret.setup("clinician", "Demo: Clinic").unwrap();
        let (uri, base32) = (setup.otpauth_uri.expose(), setup.secret_base32.expose());
        assert!(uri.starts_with("otpauth://totp/ClinicDesk:"));
        assert!(uri.contains(base32));
        assert!(!format!("{secret:?}").contains(base32));
        let again = TotpSecret::from_base32(base32).unwrap();
        assert_eq!(again.as_bytes(), secret.as_bytes());
        let parsed = Totp::from_url(uri).unwrap();
        assert_eq!(parsed.secret().as_bytes(), secret.as_bytes());
        assert_eq!(parsed.digits(), 6);
    }
}
