//! A device's upload of audit events, authenticated by the events' own signatures
//! (`Access::DeviceSigned`): the device is registered, every event names it and its clinic,
//! and every signature verifies. Only then is the device's clinic a scope.
//!
//! A revoked device may still hand in the events its key signed before the revocation, and
//! nothing else: the reads of a lost or taken workstation are exactly what the trail is
//! for, and they may exist only in its outbox (BRIEF invariant 3). "Before" is the event's
//! own time, which the device signed; such events are stored and flagged as received after
//! the revocation (`ingest`), so a key used after the fact is seen by the clinic's admins.

use clinicdesk_protocol::audit::{AuditEvent, Hash32, Recorder, SignedAuditEvent, from_hex};
use clinicdesk_protocol::signature::{self, PublicKey};
use uuid::Uuid;

use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::state::AppState;
use crate::store::DeviceRecord;

/// Authenticates a batch of device-signed events (`Access::DeviceSigned`): the device is
/// registered, and every event names that device and its clinic and carries a valid
/// signature of its key. Only then is the device's clinic a scope. A revoked device's batch
/// is refused (`device_revoked`) unless it holds an event signed before the revocation
/// ([`VerifiedBatch::admits`] picks those). A batch must hold at least one event: an empty
/// one would prove nothing.
pub async fn verify_device_batch(
    state: &AppState,
    device_id: Uuid,
    events: &[SignedAuditEvent],
) -> Result<VerifiedBatch, ServerError> {
    if events.is_empty() {
        return Err(ServerError::BadRequest { field: "events" });
    }
    let device = state
        .store
        .device(device_id)
        .await?
        .ok_or(ServerError::DeviceUnknown)?;
    if let Some(revoked_at) = device.revoked_at_ms
        && !events.iter().any(|e| e.event.occurred_at_ms <= revoked_at)
    {
        return Err(ServerError::DeviceRevoked);
    }
    let key = PublicKey::from_bytes(&device.public_key)
        .ok_or(ServerError::Internal("stored device key invalid"))?;
    for signed in events {
        let e = &signed.event;
        if e.device_id != device.id || e.clinic_id != device.clinic_id {
            return Err(ServerError::Forbidden);
        }
        // Only the server records as the server, and only it says what it saw of a request.
        if e.recorded_by != Recorder::Device {
            return Err(ServerError::BadRequest {
                field: "recorded_by",
            });
        }
        if e.request.is_some() {
            return Err(ServerError::BadRequest { field: "request" });
        }
    }
    let signed = events
        .iter()
        .map(|e| {
            from_hex(&e.signature)
                .and_then(|b| <[u8; 64]>::try_from(b).ok())
                .map(|signature| (e.event.canonical_bytes(), signature))
                .ok_or(ServerError::InvalidSignature { field: "signature" })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let hashes = verify_signatures(key, signed).await?;
    let scope = ClinicScope::of_signed_batch(&device);
    Ok(VerifiedBatch {
        device,
        scope,
        hashes,
    })
}

/// A batch whose every signature checked out.
pub struct VerifiedBatch {
    pub device: DeviceRecord,
    pub scope: ClinicScope,
    /// Each event's hash, in the batch's order: computed with its signature check, from
    /// the same canonical bytes.
    pub hashes: Vec<Hash32>,
}

impl VerifiedBatch {
    /// Whether the event may be stored: any event of a live device; of a revoked one, only
    /// what it signed at or before its revocation.
    pub fn admits(&self, event: &AuditEvent) -> bool {
        self.device
            .revoked_at_ms
            .is_none_or(|at| event.occurred_at_ms <= at)
    }

    /// Whether the device was revoked: what it hands in is flagged as received after that.
    pub fn late(&self) -> bool {
        self.device.revoked()
    }
}

/// Below this many events one thread checks them all; above, the work is spread.
const EVENTS_PER_THREAD: usize = 64;

/// Checks every event's signature (canonical encoding, signature) off the async workers, a
/// share per core, each share as one batch ([`signature::verify_batch`], about four times
/// faster than one by one), and hashes each encoding on the way. One bad signature fails
/// the whole upload; otherwise the answer is the events' hashes, in order.
async fn verify_signatures(
    key: PublicKey,
    signed: Vec<(Vec<u8>, [u8; 64])>,
) -> Result<Vec<Hash32>, ServerError> {
    let failed = || ServerError::Internal("signature check");
    let threads = cores().min(signed.len().div_ceil(EVENTS_PER_THREAD)).max(1);
    // In turn: see [`check_cores`].
    let _cores = check_cores()
        .acquire_many(u32::try_from(threads).unwrap_or(1))
        .await
        .map_err(|_| failed())?;
    let valid = tokio::task::spawn_blocking(move || {
        let share = signed.len().div_ceil(threads).max(1);
        let key = &key;
        std::thread::scope(|s| {
            let workers: Vec<_> = signed
                .chunks(share)
                .map(|chunk| s.spawn(move || verify_share(key, chunk)))
                .collect();
            let mut hashes = Vec::with_capacity(signed.len());
            for worker in workers {
                hashes.push(worker.join().map_err(|_| failed())??);
            }
            Ok::<_, ServerError>(hashes.into_iter().collect::<Option<Vec<_>>>())
        })
    })
    .await
    .map_err(|_| failed())??;
    let hashes: Vec<Vec<Hash32>> =
        valid.ok_or(ServerError::InvalidSignature { field: "signature" })?;
    Ok(hashes.into_iter().flatten().collect())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// One thread of signature checks per core at once, first come first served. Uploads that
/// arrive together (a clinic's workstations after an outage) would otherwise be checked
/// all at once, each slowed by the others, and reach the write turn together and late,
/// leaving it idle meanwhile; in turn, one is written while the next is checked.
fn check_cores() -> &'static tokio::sync::Semaphore {
    static CORES: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    CORES.get_or_init(|| tokio::sync::Semaphore::new(cores()))
}

/// One share's check: its events' hashes if every signature in it is valid.
fn verify_share(
    key: &PublicKey,
    share: &[(Vec<u8>, [u8; 64])],
) -> Result<Option<Vec<Hash32>>, ServerError> {
    // Each signature's coefficient is fresh OS randomness: a device cannot aim a forged
    // signature at coefficients it does not know.
    let mut coefficients = vec![0u8; share.len() * 16];
    getrandom::fill(&mut coefficients)
        .map_err(|_| ServerError::Internal("os random source failed"))?;
    if !signature::verify_batch(key, share, &coefficients) {
        return Ok(None);
    }
    Ok(Some(
        share
            .iter()
            .map(|(bytes, _)| Hash32::of_canonical(bytes))
            .collect(),
    ))
}
