//! The verifiable audit export (`audit export --format jsonl`): JSON Lines whose first line
//! is a [`ExportHeader`] (the clinic, the filters, a signed checkpoint and the clinic's
//! public keys), then one [`ExportedEvent`] per event with its inclusion proof against that
//! checkpoint, and last an [`ExportEnd`] the server signs over the header line, the count and
//! every event hash in file order, so a dropped, added or reordered line is detected.
//! `docs/audit-format.md` specifies it; `clinicdesk-server audit verify-export` checks it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::audit::{AuditAction, AuditEvent, Hash32, Recorder};
use crate::merkle::SignedCheckpoint;
use crate::rotation::KeyRotation;

pub const EXPORT_FORMAT: &str = "clinicdesk-audit-export-v1";
const END_TAG: &[u8] = b"clinicdesk-export-end-v1\0";

/// Which events an export (or report) holds; every filter optional, `to_ms` exclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportFilters {
    pub patient_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub device_id: Option<Uuid>,
    pub action: Option<AuditAction>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

/// The key that signs one chain of the clinic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChainKey {
    pub recorded_by: Recorder,
    /// Ed25519, 64 hex digits: the workstation's key, or the server's audit key.
    pub public_key: String,
}

/// A clinic's public keys: what a verifier trusts (`audit keys` prints them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClinicKeys {
    pub clinic_id: Uuid,
    /// The server's audit key: signs checkpoints, receipts, export ends, the server chain.
    pub server: String,
    pub chains: BTreeMap<Uuid, ChainKey>,
    /// The rotations that led to `server`, oldest first: each earlier key signed what is
    /// dated in its own period. Absent when the key was never rotated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotations: Vec<KeyRotation>,
}

#[cfg(feature = "signatures")]
impl ClinicKeys {
    /// The server's keys over time, if the rotations lead to `server`.
    pub fn server_keys(&self) -> Option<crate::rotation::ServerKeys> {
        let current = crate::signature::PublicKey::from_hex(&self.server)?;
        crate::rotation::ServerKeys::from_rotations(current, &self.rotations).ok()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportHeader {
    /// [`EXPORT_FORMAT`].
    pub format: String,
    pub clinic_id: Uuid,
    pub exported_at_ms: i64,
    pub filters: ExportFilters,
    /// Every exported event is a leaf of this checkpoint's tree.
    pub checkpoint: SignedCheckpoint,
    /// The keys as the server holds them; a careful verifier brings its own.
    pub keys: ClinicKeys,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedEvent {
    pub event: AuditEvent,
    pub signature: String,
    pub leaf_index: u64,
    /// RFC 9162 inclusion proof of the event's leaf in the header's checkpoint.
    pub inclusion: Vec<Hash32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportEnd {
    pub events: u64,
    /// SHA-256 over every exported event's hash, in file order.
    pub digest: Hash32,
    /// The server's audit key over [`ExportEnd::signed_bytes`].
    pub signature: String,
}

impl ExportEnd {
    /// Tag, SHA-256 of the header line's bytes (without its newline), count, digest.
    pub fn signed_bytes(header_line: &[u8], events: u64, digest: &Hash32) -> Vec<u8> {
        let mut out = Vec::with_capacity(END_TAG.len() + 72);
        out.extend_from_slice(END_TAG);
        out.extend_from_slice(&Sha256::digest(header_line));
        out.extend_from_slice(&events.to_be_bytes());
        out.extend_from_slice(&digest.0);
        out
    }
}

/// One line of the export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)]
pub enum ExportLine {
    Header(ExportHeader),
    Event(ExportedEvent),
    End(ExportEnd),
}

/// One access to a patient's record, with its proof: a line of the patient access report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PatientAccess {
    /// Who (`actor_user_id`, `actor_role`), when, what (`action`, `resource_type`,
    /// `fields`), why (`break_glass`), from where (`device_id`, `request`).
    pub event: AuditEvent,
    pub signature: String,
    /// The actor's display name, as the clinic's user list has it now.
    pub actor_name: Option<String>,
    /// The workstation's name (or "ClinicDesk server").
    pub device_name: Option<String>,
    pub leaf_index: u64,
    /// Inclusion proof of the event in the report's checkpoint.
    pub inclusion: Vec<Hash32>,
    /// When the server received the event, beside the time the workstation signed
    /// (`event.occurred_at_ms`): a workstation's clock, or an insider holding its key, may
    /// date an event into the past; its arrival cannot be.
    #[serde(default)]
    pub received_at_ms: Option<i64>,
}

/// How a patient access report is ordered, newest first: by the time each event says it
/// happened (the workstation's clock for its own events), or by when the server received
/// it, so an event dated into the past still shows among the newest arrivals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReportOrder {
    #[default]
    Occurred,
    Received,
}

/// Every access to one patient's record in a period, newest first, each provably in the
/// clinic's signed log: what a privacy officer hands a patient who asks who looked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PatientAccessReport {
    pub clinic_id: Uuid,
    pub patient_id: Uuid,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub generated_at_ms: i64,
    pub checkpoint: SignedCheckpoint,
    #[serde(default)]
    pub order: ReportOrder,
    pub accesses: Vec<PatientAccess>,
}

/// The running digest of exported event hashes.
#[derive(Default, Clone)]
pub struct EventDigest(Sha256);

impl EventDigest {
    pub fn push(&mut self, event_hash: &Hash32) {
        self.0.update(event_hash.0);
    }

    pub fn finish(self) -> Hash32 {
        Hash32(self.0.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_bytes_bind_header_count_and_digest() {
        let d = Hash32([7; 32]);
        let base = ExportEnd::signed_bytes(b"{}", 3, &d);
        assert!(base.starts_with(END_TAG));
        assert_ne!(base, ExportEnd::signed_bytes(b"{ }", 3, &d));
        assert_ne!(base, ExportEnd::signed_bytes(b"{}", 4, &d));
        assert_ne!(base, ExportEnd::signed_bytes(b"{}", 3, &Hash32([8; 32])));
    }

    #[test]
    fn lines_are_tagged() {
        let end = ExportLine::End(ExportEnd {
            events: 0,
            digest: EventDigest::default().finish(),
            signature: String::new(),
        });
        let json = serde_json::to_string(&end).unwrap();
        assert!(json.starts_with(r#"{"end":{"events":0,"#), "{json}");
        assert_eq!(serde_json::from_str::<ExportLine>(&json).unwrap(), end);
    }
}
