//! Secrets in the OS keychain (`keyring`: Secret Service on Linux, Keychain on macOS,
//! Credential Manager on Windows). Values are 32-byte keys stored as hex; every copy in
//! memory is `Zeroizing`. There is no fallback store: no keychain, no keys.

use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum KeychainError {
    #[error("no keychain entry")]
    Missing,
    #[error("keychain entry malformed")]
    Malformed,
    #[error("os random source failed")]
    Random,
    #[error("keychain unavailable")]
    Unavailable(#[source] keyring::Error),
}

impl From<keyring::Error> for KeychainError {
    fn from(e: keyring::Error) -> Self {
        match e {
            keyring::Error::NoEntry => KeychainError::Missing,
            other => KeychainError::Unavailable(other),
        }
    }
}

/// The keychain entries of one app installation: `service` / `<install id>/<name>`.
#[derive(Debug, Clone)]
pub struct Keychain {
    service: String,
    prefix: String,
}

impl Keychain {
    pub fn new(service: &str, install_id: &str) -> Self {
        Self {
            service: service.to_owned(),
            prefix: install_id.to_owned(),
        }
    }

    fn entry(&self, name: &str) -> Result<keyring::Entry, KeychainError> {
        Ok(keyring::Entry::new(
            &self.service,
            &format!("{}/{name}", self.prefix),
        )?)
    }

    pub fn store_key(&self, name: &str, key: &[u8; 32]) -> Result<(), KeychainError> {
        let hex = Zeroizing::new(clinicdesk_protocol::audit::to_hex(key));
        self.entry(name)?.set_password(&hex)?;
        Ok(())
    }

    pub fn load_key(&self, name: &str) -> Result<Zeroizing<[u8; 32]>, KeychainError> {
        let hex = Zeroizing::new(self.entry(name)?.get_password()?);
        let bytes = Zeroizing::new(
            clinicdesk_protocol::audit::from_hex(&hex).ok_or(KeychainError::Malformed)?,
        );
        let mut key = Zeroizing::new([0u8; 32]);
        if bytes.len() != 32 {
            return Err(KeychainError::Malformed);
        }
        key.copy_from_slice(&bytes);
        Ok(key)
    }

    pub fn delete(&self, name: &str) -> Result<(), KeychainError> {
        match self.entry(name)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// 32 fresh random bytes.
pub fn random_key() -> Result<Zeroizing<[u8; 32]>, KeychainError> {
    let mut key = Zeroizing::new([0u8; 32]);
    getrandom::fill(key.as_mut_slice()).map_err(|_| KeychainError::Random)?;
    Ok(key)
}
