//! `clinicdesk-server keys`: rotating the key-encryption key (every clinic's keys rewrapped
//! under a new version), re-encrypting every sealed value under a new data key
//! (`--reencrypt`), and retiring an old version once nothing needs it.
//!
//! A rotation runs beside the serving server: each batch is its own short transaction that
//! holds the clinic's lock, so registrations wait at most one batch, and new values are
//! sealed under the new data key as soon as it exists. A run killed at any point is resumed
//! by running the command again: the unfinished rotation is kept in `key_rotations`, its new
//! data keys are marked with its id, and a value is moved only if it is still under an old
//! key. Each clinic's trail records its key change (an `update` of `ClinicKeys`).

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use clinicdesk_protocol::audit::{AuditAction, from_hex, to_hex};

use crate::audit::server_chain::{self, ServerEvent, security_event};
use crate::clinical::records;
use crate::clinical::sensitive::{self, SsnIndex};
use crate::error::ServerError;
use crate::scope::{ClinicScope, Console};
use crate::secrets::field_cipher::{DataKey, IndexKey, SealedOf};
use crate::secrets::kek::{KekError, KekVersion};
use crate::secrets::store_key::{self, StoreKeyError};
use crate::state::AppState;
use crate::store::field_keys::{self as stored, Purpose, Rotation};
use crate::store::{ClinicTx, clinics};
use zeroize::Zeroizing;

/// How far a rotation is, for the console's progress line.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// Starting on clinic `index` (from 1) of `of`.
    Clinic { index: usize, of: usize },
    /// A batch of re-encrypted values is about to commit (the command's fault point for
    /// tests: a kill here loses the batch's transaction and nothing else).
    BatchReady { batch: u64 },
    /// `moved` of the clinic's `total` values are under the new data key.
    Moved { moved: u64, total: u64 },
    /// `done` of the clinic's `total` patients' SSN indexes are made by the new index key.
    Reindexed { done: u64, total: u64 },
}

/// What a run of `keys rotate` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RotationReport {
    /// The key-encryption key version every clinic key is now wrapped under.
    pub kek_version: u32,
    /// Whether this run finished a rotation an earlier run started.
    pub resumed: bool,
    pub clinics: u64,
    pub keys_rewrapped: u64,
    /// Whether the embedded store's database key was rewrapped too.
    pub store_key_rewrapped: bool,
    pub values_reencrypted: u64,
    /// Old data keys deleted once nothing was sealed under them.
    pub data_keys_destroyed: u64,
    /// Patients whose SSN blind indexes were remade under a new index key.
    pub indexes_remade: u64,
    /// Old index keys deleted once no index was made by them.
    pub index_keys_destroyed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Provider(#[from] KekError),
    #[error(transparent)]
    StoreKey(#[from] StoreKeyError),
    #[error("the embedded database's key is still wrapped under {0}; run `keys rotate` first")]
    StoreKeyStillWrapped(KekVersion),
    #[error("key-encryption key {0} is the current one; rotate first")]
    RetireCurrent(KekVersion),
    #[error("a key rotation has not finished; run `keys rotate` again to finish it first")]
    RotationUnfinished,
    #[error("{keys} clinic keys are still wrapped under {version}; run `keys rotate` first")]
    StillInUse { version: KekVersion, keys: u64 },
}

const ROUTE: &str = "keys rotate";

/// Rewraps every clinic's keys under a new key-encryption key version (or finishes the
/// rotation an earlier run left), re-encrypting every sealed value under a new data key
/// first when `reencrypt` is set, `batch_size` values per transaction.
pub async fn rotate(
    state: &AppState,
    console: &Console,
    reencrypt: bool,
    batch_size: u32,
    progress: &mut dyn FnMut(Step),
) -> Result<RotationReport, KeysError> {
    let store = &state.store;
    let now = state.clock.now_ms();
    let (rotation, resumed) = match stored::unfinished_rotation(store).await? {
        Some(mut r) => {
            if reencrypt && !r.reencrypt {
                stored::also_reencrypt(store, r.id).await?;
                r.reencrypt = true;
            }
            (r, true)
        }
        None => {
            let version = state.keys.rotate()?;
            (
                stored::start_rotation(store, version.0, reencrypt, now).await?,
                false,
            )
        }
    };
    let kek = KekVersion(rotation.kek_version);
    if !state.keys.versions()?.contains(&kek) {
        return Err(KekError::Unknown(kek).into());
    }
    let mut report = RotationReport {
        kek_version: kek.0,
        resumed,
        ..RotationReport::default()
    };
    let ids = stored::clinic_ids(store).await?;
    // Counted across clinics and phases: the fault point's batch number.
    let mut batches = 0u64;
    for (i, clinic) in ids.iter().enumerate() {
        progress(Step::Clinic {
            index: i + 1,
            of: ids.len(),
        });
        let scope = ClinicScope::of_console(console, *clinic);
        if rotation.reencrypt {
            let batch_size = batch_size.max(1);
            let (moved, destroyed) = reencrypt_clinic(
                state,
                console,
                &scope,
                &rotation,
                batch_size,
                &mut batches,
                progress,
            )
            .await?;
            report.values_reencrypted += moved;
            report.data_keys_destroyed += destroyed;
            let (remade, destroyed) = reindex_clinic(
                state,
                console,
                &scope,
                &rotation,
                batch_size,
                &mut batches,
                progress,
            )
            .await?;
            report.indexes_remade += remade;
            report.index_keys_destroyed += destroyed;
        }
        report.keys_rewrapped += rewrap_clinic(state, console, &scope, kek).await?;
        report.clinics += 1;
    }
    // The database key is the store's, not a clinic's: no clinic's trail records it.
    report.store_key_rewrapped = store_key::rewrap(&state.data_dir, state.keys.as_ref(), kek)?;
    stored::finish_rotation(store, rotation.id, state.clock.now_ms()).await?;
    Ok(report)
}

/// The event of a change to the clinic's keys (`changed`: which; never a key), recorded in
/// the transaction that makes the change, so no key changes without the trail saying so.
fn key_change(console: &Console, scope: &ClinicScope, changed: &str) -> ServerEvent {
    let mut event = security_event(
        &console.actor(scope.clinic_id()),
        AuditAction::Update,
        "ClinicKeys",
        scope.clinic_id().to_string(),
        ROUTE,
        console.seen(ROUTE),
    );
    event.fields = vec![changed.to_owned()];
    event
}

/// Every clinic's trail records that the server's audit key was rotated (`update` of
/// `AuditKey`, its `resource_id` the new public key), signed by the new key: an auditor
/// reading the trail sees where one key's period ends. Answers how many clinics recorded it.
pub async fn record_audit_key_rotation(
    state: &AppState,
    console: &Console,
    new_key: &str,
) -> Result<u64, ServerError> {
    const ROUTE: &str = "audit rotate-key";
    let mut recorded = 0;
    for clinic in stored::clinic_ids(&state.store).await? {
        let scope = ClinicScope::of_console(console, clinic);
        let event = security_event(
            &console.actor(clinic),
            AuditAction::Update,
            "AuditKey",
            new_key.to_owned(),
            ROUTE,
            console.seen(ROUTE),
        );
        server_chain::record(state, &scope, vec![event]).await?;
        recorded += 1;
    }
    Ok(recorded)
}

async fn locked_tx(state: &AppState, scope: &ClinicScope) -> Result<ClinicTx, ServerError> {
    let mut tx = state.store.clinic_tx(scope).await?;
    clinics::lock_clinic(&mut tx, scope.clinic_id()).await?;
    Ok(tx)
}

/// The clinic's `purpose` key of this rotation (its id and the key): found if an earlier run
/// made it, else made now with its event in the same transaction (`tx`, the clinic locked).
/// `None` if the clinic has no key of that purpose (nothing was ever sealed or indexed).
async fn rotation_key(
    tx: &mut ClinicTx,
    state: &AppState,
    console: &Console,
    rotation: &Rotation,
    purpose: Purpose,
) -> Result<Option<(u32, Zeroizing<[u8; 32]>)>, ServerError> {
    let keys = &*state.keys;
    let scope = tx.scope().clone();
    let held = stored::keys(tx, purpose).await?;
    let Some(newest) = held.last() else {
        return Ok(None);
    };
    if let Some(k) = held.iter().find(|k| k.rotation_id == Some(rotation.id)) {
        let key = sensitive::unwrap(keys, scope.clinic_id(), purpose, k)?;
        return Ok(Some((k.key_id, key)));
    }
    let id = newest.key_id + 1;
    let now = state.clock.now_ms();
    let key = sensitive::make_key(tx, keys, purpose, id, Some(rotation.id), now).await?;
    let changed = match purpose {
        Purpose::Data => "data_key",
        Purpose::Index => "index_key",
    };
    let event = key_change(console, &scope, changed);
    server_chain::record_in(tx, state, &scope, vec![event]).await?;
    Ok(Some((id, key)))
}

/// Deletes the clinic's `purpose` keys other than `kept` that nothing is under any more:
/// how many.
async fn destroy_unused(
    state: &AppState,
    scope: &ClinicScope,
    purpose: Purpose,
    kept: u32,
) -> Result<u64, ServerError> {
    let mut tx = locked_tx(state, scope).await?;
    let mut destroyed = 0;
    for k in stored::keys(&mut tx, purpose).await? {
        if k.key_id != kept && stored::delete_unused_key(&mut tx, purpose, k.key_id).await? {
            destroyed += 1;
        }
    }
    tx.commit().await?;
    Ok(destroyed)
}

/// Moves every value of the clinic under this rotation's data key (made here, with its
/// event, if an earlier run did not), then deletes the old data keys: how many values moved
/// and how many keys were destroyed.
async fn reencrypt_clinic(
    state: &AppState,
    console: &Console,
    scope: &ClinicScope,
    rotation: &Rotation,
    batch_size: u32,
    batch: &mut u64,
    progress: &mut dyn FnMut(Step),
) -> Result<(u64, u64), ServerError> {
    let keys = &*state.keys;
    let clinic = scope.clinic_id();
    let mut tx = locked_tx(state, scope).await?;
    let Some((id, key)) = rotation_key(&mut tx, state, console, rotation, Purpose::Data).await?
    else {
        // Nothing was ever sealed here.
        return Ok((0, 0));
    };
    let target = DataKey::new(id, &key);
    let total = stored::count_not_under(&mut tx, target.id()).await?;
    tx.commit().await?;

    let mut old: HashMap<u32, DataKey> = HashMap::new();
    // From where the last batch ended: each batch reads its own rows, not every value
    // before them again.
    let (mut moved, mut after) = (0u64, None);
    loop {
        let mut tx = locked_tx(state, scope).await?;
        let rows = stored::sealed_not_under(&mut tx, target.id(), after, batch_size).await?;
        let Some(last) = rows.last() else {
            break;
        };
        after = Some(last.id);
        for row in &rows {
            let from = match old.entry(row.key_id) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    let wrapped = stored::key(&mut tx, Purpose::Data, row.key_id)
                        .await?
                        .ok_or(ServerError::Internal("data key missing"))?;
                    let key = sensitive::unwrap(keys, clinic, Purpose::Data, &wrapped)?;
                    e.insert(DataKey::new(row.key_id, &key))
                }
            };
            let of = SealedOf {
                clinic,
                value_id: row.id,
                field: &row.field,
            };
            let sealed =
                from_hex(&row.sealed).ok_or(ServerError::Internal("sealed value malformed"))?;
            let plain = from.open(&of, &sealed)?;
            let resealed = to_hex(&target.seal(&of, &plain)?);
            stored::reseal(&mut tx, row.id, row.key_id, target.id(), &resealed).await?;
        }
        *batch += 1;
        progress(Step::BatchReady { batch: *batch });
        tx.commit().await?;
        moved += rows.len() as u64;
        progress(Step::Moved {
            moved,
            total: total.max(moved),
        });
    }

    let destroyed = destroy_unused(state, scope, Purpose::Data, target.id()).await?;
    Ok((moved, destroyed))
}

/// Remakes every SSN blind index of the clinic under this rotation's index key (made here,
/// with its event, if an earlier run did not), then deletes the old index keys: how many
/// patients' indexes were remade and how many keys were destroyed. Until the last
/// batch commits, searches look under both keys (`sensitive::ssn_lookup`), and registrations
/// index under the new one.
async fn reindex_clinic(
    state: &AppState,
    console: &Console,
    scope: &ClinicScope,
    rotation: &Rotation,
    batch_size: u32,
    batch: &mut u64,
    progress: &mut dyn FnMut(Step),
) -> Result<(u64, u64), ServerError> {
    let keys = &*state.keys;
    let mut tx = locked_tx(state, scope).await?;
    let Some((id, key)) = rotation_key(&mut tx, state, console, rotation, Purpose::Index).await?
    else {
        // No SSN was ever indexed here.
        return Ok((0, 0));
    };
    let target = IndexKey::new(id, &key);
    let total = stored::count_indexed_not_under(&mut tx, target.id()).await?;
    tx.commit().await?;

    let (mut done, mut after) = (0u64, None);
    loop {
        let mut tx = locked_tx(state, scope).await?;
        let rows = stored::indexed_not_under(&mut tx, target.id(), after, batch_size).await?;
        let Some((last, _, _)) = rows.last() else {
            break;
        };
        after = Some(*last);
        for (patient, _, record) in &rows {
            let ssn = records::stored_ssn(&mut tx, keys, record).await?;
            let remade = SsnIndex::of(&target, &ssn);
            stored::set_ssn_index(
                &mut tx,
                *patient,
                &remade.whole,
                &remade.last4,
                remade.key_id,
            )
            .await?;
        }
        *batch += 1;
        progress(Step::BatchReady { batch: *batch });
        tx.commit().await?;
        done += rows.len() as u64;
        progress(Step::Reindexed {
            done,
            total: total.max(done),
        });
    }

    let destroyed = destroy_unused(state, scope, Purpose::Index, target.id()).await?;
    Ok((done, destroyed))
}

/// Rewraps each of the clinic's keys that is not under `kek`, with its event if any was:
/// how many.
async fn rewrap_clinic(
    state: &AppState,
    console: &Console,
    scope: &ClinicScope,
    kek: KekVersion,
) -> Result<u64, ServerError> {
    let keys = &*state.keys;
    let clinic = scope.clinic_id();
    let mut tx = locked_tx(state, scope).await?;
    let mut n = 0;
    for purpose in [Purpose::Data, Purpose::Index] {
        for k in stored::keys(&mut tx, purpose).await? {
            if k.kek_version == kek.0 {
                continue;
            }
            let key = sensitive::unwrap(keys, clinic, purpose, &k)?;
            let wrapped = sensitive::wrap(keys, clinic, purpose, k.key_id, &key, kek)?;
            stored::rewrap(&mut tx, purpose, k.key_id, kek.0, &wrapped).await?;
            n += 1;
        }
    }
    if n > 0 {
        let event = key_change(console, scope, "key_encryption_key");
        server_chain::record_in(&mut tx, state, scope, vec![event]).await?;
    }
    tx.commit().await?;
    Ok(n)
}

/// How many clinic keys each key-encryption key version on file wraps.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyStatus {
    pub current: u32,
    /// (version, clinic keys it wraps), every version on file.
    pub versions: Vec<(u32, u64)>,
    /// The version the embedded store's database key is wrapped under (none on PostgreSQL).
    pub store_key: Option<u32>,
    pub rotation_unfinished: bool,
}

pub async fn status(state: &AppState, console: &Console) -> Result<KeyStatus, KeysError> {
    let current = state.keys.current()?;
    let mut counts: HashMap<u32, u64> = HashMap::new();
    for clinic in stored::clinic_ids(&state.store).await? {
        let scope = ClinicScope::of_console(console, clinic);
        let mut tx = state.store.clinic_tx(&scope).await?;
        for purpose in [Purpose::Data, Purpose::Index] {
            for k in stored::keys(&mut tx, purpose).await? {
                *counts.entry(k.kek_version).or_default() += 1;
            }
        }
        tx.commit().await.map_err(ServerError::from)?;
    }
    Ok(KeyStatus {
        current: current.0,
        versions: state
            .keys
            .versions()?
            .into_iter()
            .map(|v| (v.0, counts.get(&v.0).copied().unwrap_or(0)))
            .collect(),
        store_key: store_key::wrapped_under(&state.data_dir)?.map(|v| v.0),
        rotation_unfinished: stored::unfinished_rotation(&state.store).await?.is_some(),
    })
}

/// Destroys key-encryption key `version`, once no clinic key is wrapped under it and it is
/// not the current one.
pub async fn retire(state: &AppState, console: &Console, version: u32) -> Result<(), KeysError> {
    let version = KekVersion(version);
    if state.keys.current()? == version {
        return Err(KeysError::RetireCurrent(version));
    }
    let status = status(state, console).await?;
    if status.rotation_unfinished {
        return Err(KeysError::RotationUnfinished);
    }
    let in_use = status
        .versions
        .iter()
        .find(|(v, _)| *v == version.0)
        .map_or(0, |(_, n)| *n);
    if in_use > 0 {
        return Err(KeysError::StillInUse {
            version,
            keys: in_use,
        });
    }
    if status.store_key == Some(version.0) {
        return Err(KeysError::StoreKeyStillWrapped(version));
    }
    state.keys.retire(version)?;
    Ok(())
}
