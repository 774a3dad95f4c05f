//! The server's shared state, handed to every handler and domain call: the store, the
//! clock, the keys and the server chain's tips. Opening it brings the database up to date and
//! adds any events written before the log existed to it.

use std::sync::Arc;

use crate::audit::key::AuditKey;
use crate::secrets::kek::{KeyFileProvider, KeyProvider};
use crate::secrets::key_file::KeyFileError;
use crate::secrets::seal::SealKey;
use crate::secrets::store_key::{self, StoreKeyError};
use crate::sign_in::mfa::webauthn::{DEFAULT_ORIGIN, RelyingParty, WebauthnConfigError};
use crate::store::{DatabaseKey, Store, StoreLocation, at_rest};
use crate::time::Clock;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    /// Signs checkpoints and receipts.
    pub audit_key: Arc<AuditKey>,
    /// Seals TOTP secrets at rest.
    pub seal: Arc<SealKey>,
    /// Seals the workstations' escrowed device secrets.
    pub escrow: Arc<SealKey>,
    /// WebAuthn relying party (origin `https://localhost` unless configured).
    pub relying_party: Arc<RelyingParty>,
    /// Wraps each clinic's keys for sensitive fields and the embedded store's key.
    pub keys: Arc<dyn KeyProvider>,
    /// The data directory: the key files, the TLS files, the embedded store's wrapped key.
    pub data_dir: std::path::PathBuf,
    /// Where each clinic's server chain and log ended at this process's last event.
    pub chain_tips: Arc<crate::audit::server_chain::Tips>,
}

/// The embedded store of `data_dir`, under its database key (made on first open, unwrapped
/// by `keys` after that).
pub fn embedded_location(
    data_dir: &std::path::Path,
    keys: &dyn KeyProvider,
) -> Result<StoreLocation, OpenError> {
    let file = data_dir.join(crate::store::EMBEDDED_FILE);
    let encrypted = at_rest::is_encrypted(&file).map_err(|source| {
        OpenError::StoreKey(StoreKeyError::Io {
            path: file.clone(),
            source,
        })
    })?;
    let key = store_key::load_or_create(data_dir, keys, encrypted)?;
    Ok(StoreLocation::in_data_dir(
        data_dir,
        DatabaseKey::from_bytes(key),
    ))
}

impl AppState {
    /// The data directory's embedded store, with the default key-encryption keys in
    /// `DATA_DIR.keys` beside it (created if missing).
    pub async fn open(
        data_dir: &std::path::Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OpenError> {
        crate::store::private_files::private_dir(data_dir).map_err(|source| {
            OpenError::StoreKey(StoreKeyError::Io {
                path: data_dir.to_owned(),
                source,
            })
        })?;
        let keys: Arc<dyn KeyProvider> =
            Arc::new(KeyFileProvider::new(KeyFileProvider::default_dir(data_dir)));
        let location = embedded_location(data_dir, keys.as_ref())?;
        Self::open_at(&location, data_dir, clock, keys).await
    }

    /// A server on the database at `location`, with `keys` for the clinics' keys (and the
    /// embedded store's, which `location` already carries); the other key files and the TLS
    /// files stay in `data_dir` (instances that share a database must share these too).
    pub async fn open_at(
        location: &StoreLocation,
        data_dir: &std::path::Path,
        clock: Arc<dyn Clock>,
        keys: Arc<dyn KeyProvider>,
    ) -> Result<Self, OpenError> {
        let store = Store::open(location).await.map_err(OpenError::Store)?;
        let audit_key = Arc::new(AuditKey::load_or_create(data_dir)?);
        let seal = Arc::new(SealKey::mfa(data_dir)?);
        let escrow = Arc::new(SealKey::escrow(data_dir)?);
        let relying_party = Arc::new(RelyingParty::new(DEFAULT_ORIGIN)?);
        crate::audit::log::adopt_unlogged(&store, &audit_key, clock.now_ms())
            .await
            .map_err(OpenError::Store)?;
        Ok(Self {
            store,
            clock,
            audit_key,
            seal,
            escrow,
            relying_party,
            keys,
            data_dir: data_dir.to_owned(),
            chain_tips: Arc::default(),
        })
    }

    /// Serves WebAuthn for `origin` (an https URL whose host is the relying party id).
    pub fn with_webauthn_origin(mut self, origin: &str) -> Result<Self, WebauthnConfigError> {
        self.relying_party = Arc::new(RelyingParty::new(origin)?);
        Ok(self)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the database")]
    Store(#[source] crate::error::ServerError),
    #[error(transparent)]
    Key(#[from] KeyFileError),
    #[error(transparent)]
    StoreKey(#[from] StoreKeyError),
    #[error(transparent)]
    Webauthn(#[from] WebauthnConfigError),
}
