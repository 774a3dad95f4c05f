//! Sensitive fields (those `policy::fields` marks `sensitive`: a patient's SSN) are sealed
//! before they reach the database. A record's stored content holds a reference,
//! `sealed:<id>`, in place of the value; the value lives in `sealed_values`, sealed under the
//! clinic's current data key and bound to the clinic, its id and its field. So a record's
//! history stays immutable and hash-checked by `audit verify`, while a re-encryption
//! (`crate::admin::keys`) rewrites only the sealed rows. Exact-match search uses keyed blind
//! indexes beside the content, never the value.
//!
//! Each clinic's keys are made on first need and stored only wrapped by the current
//! key-encryption key (`crate::secrets::kek`). Call [`seal`] with the clinic locked: the
//! first seal of a clinic makes its data key.

use clinicdesk_protocol::audit::{from_hex, to_hex};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::error::ServerError;
use crate::secrets::field_cipher::{self, DataKey, IndexKey, SealedOf};
use crate::secrets::kek::{KekError, KekVersion, KeyProvider};
use crate::store::ClinicTx;
use crate::store::field_keys::{self as stored, Purpose, SealedRow, WrappedKey};

const REFERENCE: &str = "sealed:";

/// A provider failure, logged by its cause (a path, a version; never a value).
pub(crate) fn provider_failed(e: &KekError) -> ServerError {
    tracing::error!(error = %e, "the key provider failed");
    ServerError::Internal("the key provider failed")
}

/// Unwraps one of `clinic`'s keys.
pub(crate) fn unwrap(
    keys: &dyn KeyProvider,
    clinic: Uuid,
    purpose: Purpose,
    key: &WrappedKey,
) -> Result<Zeroizing<[u8; 32]>, ServerError> {
    let wrapped = from_hex(&key.wrapped).ok_or(ServerError::Internal("wrapped key malformed"))?;
    let context = field_cipher::wrap_context(clinic, purpose.as_str(), key.key_id);
    keys.unwrap(KekVersion(key.kek_version), &wrapped, &context)
        .map_err(|e| provider_failed(&e))
}

/// Wraps `key` as the clinic's `purpose` key `key_id` under the current key-encryption key.
pub(crate) fn wrap(
    keys: &dyn KeyProvider,
    clinic: Uuid,
    purpose: Purpose,
    key_id: u32,
    key: &[u8; 32],
    kek: KekVersion,
) -> Result<String, ServerError> {
    let context = field_cipher::wrap_context(clinic, purpose.as_str(), key_id);
    keys.wrap(kek, key, &context)
        .map(|w| to_hex(&w))
        .map_err(|e| provider_failed(&e))
}

/// Makes and stores a new key of the clinic: `key_id`, wrapped under the current version.
pub(crate) async fn make_key(
    tx: &mut ClinicTx,
    keys: &dyn KeyProvider,
    purpose: Purpose,
    key_id: u32,
    rotation_id: Option<i64>,
    now_ms: i64,
) -> Result<Zeroizing<[u8; 32]>, ServerError> {
    let key = field_cipher::new_key()?;
    let kek = keys.current().map_err(|e| provider_failed(&e))?;
    let wrapped = wrap(keys, tx.clinic_id(), purpose, key_id, &key, kek)?;
    let row = WrappedKey {
        key_id,
        kek_version: kek.0,
        wrapped,
        rotation_id,
    };
    stored::insert_key(tx, purpose, &row, now_ms).await?;
    Ok(key)
}

/// The clinic's current data key (its highest), made if it has none.
async fn current_data_key(
    tx: &mut ClinicTx,
    keys: &dyn KeyProvider,
    now_ms: i64,
) -> Result<DataKey, ServerError> {
    match stored::keys(tx, Purpose::Data).await?.last() {
        Some(k) => Ok(DataKey::new(
            k.key_id,
            &*unwrap(keys, tx.clinic_id(), Purpose::Data, k)?,
        )),
        None => Ok(DataKey::new(
            1,
            &*make_key(tx, keys, Purpose::Data, 1, None, now_ms).await?,
        )),
    }
}

/// The clinic's index key `wrapped`, unwrapped.
pub(crate) fn index_key_of(
    keys: &dyn KeyProvider,
    clinic: Uuid,
    wrapped: &WrappedKey,
) -> Result<IndexKey, ServerError> {
    Ok(IndexKey::new(
        wrapped.key_id,
        &*unwrap(keys, clinic, Purpose::Index, wrapped)?,
    ))
}

/// The clinic's newest index key (the one new indexes are made with), made if `make` and it
/// has none; `None` if it has none.
async fn index_key(
    tx: &mut ClinicTx,
    keys: &dyn KeyProvider,
    now_ms: i64,
    make: bool,
) -> Result<Option<IndexKey>, ServerError> {
    match stored::keys(tx, Purpose::Index).await?.last() {
        Some(k) => Ok(Some(index_key_of(keys, tx.clinic_id(), k)?)),
        None if make => Ok(Some(IndexKey::new(
            1,
            &*make_key(tx, keys, Purpose::Index, 1, None, now_ms).await?,
        ))),
        None => Ok(None),
    }
}

/// Seals `plaintext` as a new value of `field`; what the stored content holds in its place.
pub(crate) async fn seal(
    tx: &mut ClinicTx,
    keys: &dyn KeyProvider,
    now_ms: i64,
    field: &'static str,
    plaintext: &str,
) -> Result<String, ServerError> {
    let key = current_data_key(tx, keys, now_ms).await?;
    let id = Uuid::now_v7();
    let of = SealedOf {
        clinic: tx.clinic_id(),
        value_id: id,
        field,
    };
    let row = SealedRow {
        id,
        field: field.to_owned(),
        key_id: key.id(),
        sealed: to_hex(&key.seal(&of, plaintext)?),
    };
    stored::insert_sealed(tx, &row).await?;
    Ok(format!("{REFERENCE}{id}"))
}

/// Seals many SSNs under the clinic's current keys, unwrapped once (an import batch's): the
/// sealed rows are kept for the caller to store with its own, in one round.
/// Use it only inside the locked transaction it first sealed in.
#[derive(Default)]
pub(crate) struct Sealer {
    keys: Option<(DataKey, IndexKey)>,
    sealed: Vec<SealedRow>,
}

impl Sealer {
    /// Seals `ssn` (`NNN-NN-NNNN`, or '' for none): the reference the content holds in its
    /// place, and its blind indexes.
    pub async fn seal_ssn(
        &mut self,
        tx: &mut ClinicTx,
        keys: &dyn KeyProvider,
        now_ms: i64,
        ssn: &str,
    ) -> Result<(String, SsnIndex), ServerError> {
        if ssn.is_empty() {
            return Ok((String::new(), SsnIndex::none()));
        }
        if self.keys.is_none() {
            let data = current_data_key(tx, keys, now_ms).await?;
            let index = index_key(tx, keys, now_ms, true)
                .await?
                .ok_or(ServerError::Internal("index key not made"))?;
            self.keys = Some((data, index));
        }
        let Some((data, index)) = &self.keys else {
            unreachable!("set above")
        };
        let id = Uuid::now_v7();
        let of = SealedOf {
            clinic: tx.clinic_id(),
            value_id: id,
            field: "ssn",
        };
        self.sealed.push(SealedRow {
            id,
            field: "ssn".to_owned(),
            key_id: data.id(),
            sealed: to_hex(&data.seal(&of, ssn)?),
        });
        Ok((format!("{REFERENCE}{id}"), SsnIndex::of(index, ssn)))
    }

    /// The values sealed, to store.
    pub fn into_rows(self) -> Vec<SealedRow> {
        self.sealed
    }
}

/// The value of `field` that `reference` names ('' for ''). A stored value that is not a
/// reference, a missing row, or one that does not open is an error: never a plaintext.
pub(crate) async fn open(
    tx: &mut ClinicTx,
    keys: &dyn KeyProvider,
    field: &'static str,
    reference: &str,
) -> Result<Zeroizing<String>, ServerError> {
    if reference.is_empty() {
        return Ok(Zeroizing::new(String::new()));
    }
    let id = reference
        .strip_prefix(REFERENCE)
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or(ServerError::Internal("sensitive field stored unsealed"))?;
    let row = stored::sealed(tx, id)
        .await?
        .ok_or(ServerError::Internal("sealed value missing"))?;
    let wrapped = stored::key(tx, Purpose::Data, row.key_id)
        .await?
        .ok_or(ServerError::Internal("data key missing"))?;
    let key = DataKey::new(
        row.key_id,
        &*unwrap(keys, tx.clinic_id(), Purpose::Data, &wrapped)?,
    );
    let sealed = from_hex(&row.sealed).ok_or(ServerError::Internal("sealed value malformed"))?;
    let of = SealedOf {
        clinic: tx.clinic_id(),
        value_id: id,
        field,
    };
    key.open(&of, &sealed)
}

/// An SSN's blind indexes: of the whole number and of its last four digits ('' for none),
/// and the index key that made them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SsnIndex {
    pub whole: String,
    pub last4: String,
    pub key_id: u32,
}

impl SsnIndex {
    /// No SSN: nothing indexed (the key id means nothing then, and stays 1).
    pub fn none() -> Self {
        Self {
            whole: String::new(),
            last4: String::new(),
            key_id: 1,
        }
    }

    /// The indexes of `ssn` (`NNN-NN-NNNN`, or '' for none) under `key`.
    pub fn of(key: &IndexKey, ssn: &str) -> Self {
        if ssn.is_empty() {
            return Self::none();
        }
        Self {
            whole: key.index(SSN_KIND, ssn),
            last4: key.index(SSN_LAST4_KIND, last4(ssn)),
            key_id: key.id(),
        }
    }
}

const SSN_KIND: &str = "ssn";
const SSN_LAST4_KIND: &str = "ssn-last4";

fn last4(ssn: &str) -> &str {
    ssn.get(ssn.len().saturating_sub(4)..).unwrap_or_default()
}

/// The blind indexes of an SSN (`NNN-NN-NNNN`) to store beside its record, under the
/// clinic's newest index key.
pub(crate) async fn ssn_index(
    tx: &mut ClinicTx,
    keys: &dyn KeyProvider,
    now_ms: i64,
    ssn: &str,
) -> Result<SsnIndex, ServerError> {
    if ssn.is_empty() {
        return Ok(SsnIndex::none());
    }
    let Some(key) = index_key(tx, keys, now_ms, true).await? else {
        return Err(ServerError::Internal("index key not made"));
    };
    Ok(SsnIndex::of(&key, ssn))
}

/// The blind indexes an SSN should have under the clinic's index key `key_id` (`None`: the
/// clinic has no such key, so no SSN can have been indexed by it). Makes no key: for
/// checking, not writing.
pub(crate) async fn ssn_index_if_keyed(
    tx: &mut ClinicTx,
    keys: &dyn KeyProvider,
    ssn: &str,
    key_id: u32,
) -> Result<Option<SsnIndex>, ServerError> {
    if ssn.is_empty() {
        return Ok(Some(SsnIndex::none()));
    }
    let Some(wrapped) = stored::key(tx, Purpose::Index, key_id).await? else {
        return Ok(None);
    };
    let key = index_key_of(keys, tx.clinic_id(), &wrapped)?;
    Ok(Some(SsnIndex::of(&key, ssn)))
}

/// What a search by SSN looks for.
pub(crate) enum SsnQuery<'a> {
    Whole(&'a str),
    Last4(&'a str),
}

/// The blind indexes a search by SSN looks up, one under each of the clinic's index keys
/// (two while `keys rotate --reencrypt` moves the indexes to a new key, else one), and in
/// which column; no indexes if the clinic has no index key (so no patient has an SSN on file).
pub(crate) async fn ssn_lookup(
    tx: &mut ClinicTx,
    keys: &dyn KeyProvider,
    query: &SsnQuery<'_>,
) -> Result<(stored::IndexColumn, Vec<String>), ServerError> {
    let mut indexes = Vec::new();
    for wrapped in stored::keys(tx, Purpose::Index).await? {
        let key = index_key_of(keys, tx.clinic_id(), &wrapped)?;
        indexes.push(match query {
            SsnQuery::Whole(ssn) => key.index(SSN_KIND, ssn),
            SsnQuery::Last4(digits) => key.index(SSN_LAST4_KIND, digits),
        });
    }
    let column = match query {
        SsnQuery::Whole(_) => stored::IndexColumn::Ssn,
        SsnQuery::Last4(_) => stored::IndexColumn::SsnLast4,
    };
    Ok((column, indexes))
}

/// An SSN as a person types it (`123-45-6789`, `123456789`, with spaces), in the one form
/// the server stores and indexes: `NNN-NN-NNNN`. `None` if it is not nine digits.
pub fn normalize_ssn(typed: &str) -> Option<String> {
    let digits: String = typed.chars().filter(|c| !matches!(c, '-' | ' ')).collect();
    (digits.len() == 9 && digits.chars().all(|c| c.is_ascii_digit()))
        .then(|| format!("{}-{}-{}", &digits[..3], &digits[3..5], &digits[5..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssns_are_stored_in_one_form() {
        assert_eq!(normalize_ssn("999-12-3456").as_deref(), Some("999-12-3456"));
        assert_eq!(normalize_ssn("999123456").as_deref(), Some("999-12-3456"));
        assert_eq!(
            normalize_ssn(" 999 12 3456").as_deref(),
            Some("999-12-3456")
        );
        assert_eq!(normalize_ssn("999-12-345"), None);
        assert_eq!(normalize_ssn("99a-12-3456"), None);
        assert_eq!(normalize_ssn("٩٩٩-12-3456"), None, "ASCII digits only");
        assert_eq!(last4("999-12-3456"), "3456");
    }
}
