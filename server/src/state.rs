//! The server's shared state, handed to every handler and domain call: the store, the
//! clock, the keys and the server chain's tips. Opening it brings the database up to date and
//! adds any events written before the log existed to it.

use std::sync::Arc;

use crate::audit::key::AuditKey;
use crate::secrets::kek::{KeyFileProvider, KeyProvider};
use crate::secrets::key_file::KeyFileError;
use crate::secrets::seal::SealKey;
use crate::sign_in::mfa::webauthn::{DEFAULT_ORIGIN, RelyingParty, WebauthnConfigError};
use crate::store::{Store, StoreLocation};
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
    /// Wraps each clinic's keys for sensitive fields: key files in `DATA_DIR.keys` unless
    /// [`AppState::with_key_provider`] says otherwise.
    pub keys: Arc<dyn KeyProvider>,
    /// Where each clinic's server chain and log ended at this process's last event.
    pub chain_tips: Arc<crate::audit::server_chain::Tips>,
}

impl AppState {
    /// The store and audit key under a data directory (created if missing).
    /// A server whose database is the data directory's embedded SQLite file.
    pub async fn open(
        data_dir: &std::path::Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OpenError> {
        Self::open_at(&StoreLocation::in_data_dir(data_dir), data_dir, clock).await
    }

    /// A server on the database at `location`; keys and TLS files stay in `data_dir`
    /// (instances that share a database must share these files too).
    pub async fn open_at(
        location: &StoreLocation,
        data_dir: &std::path::Path,
        clock: Arc<dyn Clock>,
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
            keys: Arc::new(KeyFileProvider::new(KeyFileProvider::default_dir(data_dir))),
            chain_tips: Arc::default(),
        })
    }

    /// Wraps the clinics' keys with `keys` (a key directory given on the command line, a
    /// KMS) instead of the default key files beside the data directory.
    pub fn with_key_provider(mut self, keys: Arc<dyn KeyProvider>) -> Self {
        self.keys = keys;
        self
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
    Webauthn(#[from] WebauthnConfigError),
}
