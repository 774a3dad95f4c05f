//! `clinicdesk-server audit verify`: recomputes, from the stored events alone, every
//! event's hash and signature, every device chain, every clinic's Merkle tree and every
//! published checkpoint (root and signature), and every tamper alert against the log's
//! record of it, and names the first bad event.
//!
//! It trusts only the device public keys and the server's audit public key (which signs
//! checkpoints and each clinic's server chain); an attacker
//! with write access to the database (triggers dropped) is caught when they modify,
//! delete, insert or reorder events, leaves or checkpoints, except for removing the tail
//! of the log together with every checkpoint that covers it: that needs a checkpoint kept
//! elsewhere (a device's receipt, an export), which `--checkpoint` checks against.

use std::collections::HashMap;

use clinicdesk_protocol::audit::{AuditAction, AuditEvent, Hash32, Recorder, SignedAuditEvent};
use clinicdesk_protocol::merkle::{Frontier, SignedCheckpoint};
use futures_util::TryStreamExt;
use uuid::Uuid;

use super::key::{PublicKey, verify_hex};
use super::log::LOWEST_STORED_LEVEL;
use crate::error::ServerError;
use crate::store::Store;
use crate::store::audit_verify::NodeRow;

/// What is wrong, and where: the first problem found, in log order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("clinic {clinic_id}: {location}: {problem}")]
pub struct Tampered {
    pub clinic_id: Uuid,
    pub location: Location,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Event {
        event_id: Uuid,
        leaf_index: u64,
    },
    Leaf(u64),
    /// A stored perfect subtree of the log: 2^level leaves from index << level.
    Node {
        level: u32,
        index: u64,
    },
    Checkpoint(u64),
    Unlogged(Uuid),
    /// A tamper alert row: the refused event's chain and sequence.
    Alert {
        device_id: Uuid,
        device_seq: u64,
    },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Event {
                event_id,
                leaf_index,
            } => write!(f, "event {event_id} (leaf {leaf_index})"),
            Location::Leaf(i) => write!(f, "leaf {i}"),
            Location::Node { level, index } => {
                write!(f, "log node {index} of level {level}")
            }
            Location::Checkpoint(size) => write!(f, "checkpoint of size {size}"),
            Location::Unlogged(id) => write!(f, "event {id}"),
            Location::Alert {
                device_id,
                device_seq,
            } => write!(
                f,
                "tamper alert of device {device_id} at sequence {device_seq}"
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("the log has no leaf here (an event was removed or renumbered)")]
    LeafMissing,
    #[error("the stored event does not parse or contradicts its row")]
    Malformed,
    #[error("the event's content does not match its recorded hash")]
    HashMismatch,
    #[error("the stored hash does not match the events under it")]
    NodeMismatch,
    #[error("the log has no stored hash here (a node was removed)")]
    NodeMissing,
    #[error("a hash is stored for leaves the log does not hold")]
    NodeBeyondLog,
    #[error("the device that signed it is unknown")]
    UnknownDevice,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("its link to the device's previous event is broken")]
    ChainBroken,
    #[error("its sequence number repeats or goes backwards in the device's chain")]
    SequenceOutOfOrder,
    #[error("the root does not match the events")]
    RootMismatch,
    #[error("the signature is not the server's")]
    CheckpointSignature,
    #[error("it covers more events than the log holds")]
    CheckpointBeyondLog,
    #[error("it was issued before a smaller checkpoint")]
    CheckpointTime,
    #[error("the event is stored but is not in the log")]
    NotInLog,
    #[error("the log records this tamper alert but its evidence is missing")]
    AlertMissing,
    #[error("the tamper alert is not recorded in the log")]
    AlertNotLogged,
    #[error("the tamper alert contradicts the log's record of it")]
    AlertMismatch,
}

/// What a clean run covered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub clinics: usize,
    pub events: u64,
    pub checkpoints: u64,
    /// Missing device sequences (not tampering: events not uploaded yet).
    pub gaps: Vec<(Uuid, u64, u64)>,
    pub alerts: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Tampered(#[from] Tampered),
    #[error("cannot read the store")]
    Store(#[from] ServerError),
}

fn uuid(s: &str) -> Result<Uuid, VerifyError> {
    Uuid::parse_str(s).map_err(|_| VerifyError::Store(ServerError::Internal("stored id malformed")))
}

/// Verifies every clinic's log. `trusted` checkpoints (from receipts or exports) must
/// each match the log too. Reads the events and the stored subtrees side by side: the
/// store's pool must allow two connections at once.
pub async fn verify_all(
    store: &Store,
    server_key: &PublicKey,
    trusted: &[SignedCheckpoint],
) -> Result<Report, VerifyError> {
    let mut report = Report::default();
    let clinics = store.clinics_to_verify().await?;
    for clinic in clinics {
        let clinic = uuid(&clinic)?;
        let mine: Vec<SignedCheckpoint> = trusted
            .iter()
            .filter(|c| c.checkpoint.clinic_id == clinic)
            .cloned()
            .collect();
        verify_clinic(store, server_key, clinic, &mine, &mut report).await?;
        report.clinics += 1;
    }
    report.alerts = u64::try_from(store.alert_count().await?).unwrap_or(0);
    Ok(report)
}

/// The key each chain of the clinic is signed with: a workstation's enrolled key, or the
/// server's audit key for the clinic's server chain, with who that recorder is.
async fn chain_keys(
    store: &Store,
    server_key: &PublicKey,
    clinic: Uuid,
) -> Result<HashMap<Uuid, (Recorder, PublicKey)>, VerifyError> {
    let rows = store.device_keys_as_stored(clinic).await?;
    let mut keys = HashMap::new();
    for row in rows {
        let id = uuid(&row.id)?;
        if row.kind == "server" {
            keys.insert(id, (Recorder::Server, *server_key));
        } else if let Some(key) = PublicKey::from_hex(&row.public_key) {
            keys.insert(id, (Recorder::Device, key));
        }
    }
    Ok(keys)
}

async fn checkpoints(store: &Store, clinic: Uuid) -> Result<Vec<SignedCheckpoint>, VerifyError> {
    let rows = store.checkpoints_as_stored(clinic).await?;
    Ok(rows
        .into_iter()
        .map(|r| SignedCheckpoint {
            checkpoint: clinicdesk_protocol::merkle::Checkpoint {
                clinic_id: clinic,
                tree_size: u64::try_from(r.tree_size).unwrap_or(u64::MAX),
                // A malformed root can never match: compare against all-ones.
                root_hash: Hash32::from_hex(&r.root_hash).unwrap_or(Hash32([0xff; 32])),
                issued_at_ms: r.issued_at_ms,
            },
            signature: r.signature,
        })
        .collect())
}

async fn verify_clinic(
    store: &Store,
    server_key: &PublicKey,
    clinic: Uuid,
    trusted: &[SignedCheckpoint],
    report: &mut Report,
) -> Result<(), VerifyError> {
    let fail = |location, problem| -> VerifyError {
        Tampered {
            clinic_id: clinic,
            location,
            problem,
        }
        .into()
    };
    let keys = chain_keys(store, server_key, clinic).await?;
    let mut pending: Vec<SignedCheckpoint> = checkpoints(store, clinic).await?;
    for c in &pending {
        if !verify_hex(server_key, &c.checkpoint.canonical_bytes(), &c.signature) {
            return Err(fail(
                Location::Checkpoint(c.checkpoint.tree_size),
                Problem::CheckpointSignature,
            ));
        }
    }
    let mut last_issued = i64::MIN;
    for c in &pending {
        if c.checkpoint.issued_at_ms < last_issued {
            return Err(fail(
                Location::Checkpoint(c.checkpoint.tree_size),
                Problem::CheckpointTime,
            ));
        }
        last_issued = c.checkpoint.issued_at_ms;
    }
    pending.extend(trusted.iter().cloned());
    pending.sort_by_key(|c| std::cmp::Reverse(c.checkpoint.tree_size));

    let mut tree = Frontier::default();
    let mut logged_alerts = LoggedAlerts::new();
    let check_due =
        |tree: &Frontier, pending: &mut Vec<SignedCheckpoint>| -> Result<(), VerifyError> {
            while let Some(c) = pending.last() {
                if c.checkpoint.tree_size != tree.size() {
                    break;
                }
                if c.checkpoint.root_hash != tree.root() {
                    return Err(fail(
                        Location::Checkpoint(c.checkpoint.tree_size),
                        Problem::RootMismatch,
                    ));
                }
                pending.pop();
            }
            Ok(())
        };
    check_due(&tree, &mut pending)?;

    let mut rows = store.logged_events(clinic);
    // The stored subtrees in the order the walk completes them: by the leaf that
    // completes each, then upwards.
    let mut nodes = store.log_nodes_in_walk_order(clinic);
    while let Some(row) = rows.try_next().await? {
        let index = u64::try_from(row.leaf_index).unwrap_or(u64::MAX);
        let row_id = uuid(&row.id)?;
        let here = Location::Event {
            event_id: row_id,
            leaf_index: index,
        };
        if index != tree.size() {
            return Err(fail(Location::Leaf(tree.size()), Problem::LeafMissing));
        }
        let event: AuditEvent = serde_json::from_str(&row.event_json)
            .map_err(|_| fail(here.clone(), Problem::Malformed))?;
        if event.id != row_id
            || event.clinic_id != clinic
            || uuid(&row.device_id)? != event.device_id
            || u64::try_from(row.device_seq).ok() != Some(event.device_seq)
        {
            return Err(fail(here, Problem::Malformed));
        }
        let hash = event.hash();
        if Hash32::from_hex(&row.hash) != Some(hash) {
            return Err(fail(here, Problem::HashMismatch));
        }
        let signed = SignedAuditEvent {
            event,
            signature: row.signature,
        };
        let Some((recorder, key)) = keys.get(&signed.event.device_id) else {
            return Err(fail(here, Problem::UnknownDevice));
        };
        if *recorder != signed.event.recorded_by {
            return Err(fail(here, Problem::Malformed));
        }
        if !verify_hex(key, &signed.event.canonical_bytes(), &signed.signature) {
            return Err(fail(here, Problem::BadSignature));
        }
        if signed.event.action == AuditAction::TamperAlert
            && signed.event.recorded_by == Recorder::Server
        {
            logged_alerts.insert(
                signed.event.resource_id.clone(),
                (signed.event.id, index, signed.event.fields),
            );
        }
        for (id, computed) in tree.push(&hash) {
            if id.level < LOWEST_STORED_LEVEL {
                continue;
            }
            let at = Location::Node {
                level: id.level,
                index: id.index,
            };
            let Some(node) = nodes.try_next().await? else {
                return Err(fail(at, Problem::NodeMissing));
            };
            let stored = stored_node(&node);
            if stored.map(|(level, index, _)| (level, index)) != Some((id.level, id.index)) {
                return Err(fail(at, Problem::NodeMissing));
            }
            if stored.map(|(_, _, hash)| hash) != Some(computed) {
                return Err(fail(at, Problem::NodeMismatch));
            }
        }
        report.events += 1;
        check_due(&tree, &mut pending)?;
    }
    drop(rows);
    if let Some(node) = nodes.try_next().await? {
        let (level, index, _) = stored_node(&node).unwrap_or((u32::MAX, u64::MAX, Hash32::GENESIS));
        return Err(fail(
            Location::Node { level, index },
            Problem::NodeBeyondLog,
        ));
    }
    drop(nodes);

    let unlogged = store.first_unlogged_event(clinic).await?;
    if let Some(id) = unlogged {
        return Err(fail(Location::Unlogged(uuid(&id)?), Problem::NotInLog));
    }
    // After the unlogged check, which names the event if the log's last one was unplaced.
    if let Some(c) = pending.last() {
        return Err(fail(
            Location::Checkpoint(c.checkpoint.tree_size),
            Problem::CheckpointBeyondLog,
        ));
    }
    report.checkpoints += u64::try_from(checkpoints(store, clinic).await?.len()).unwrap_or(0);
    verify_chains(store, clinic, report).await?;
    verify_alerts(store, clinic, &keys, logged_alerts).await
}

/// A stored node row: (level, index, hash), if well formed.
fn stored_node(row: &NodeRow) -> Option<(u32, u64, Hash32)> {
    Some((
        u32::try_from(row.level).ok()?,
        u64::try_from(row.index).ok()?,
        Hash32(<[u8; 32]>::try_from(row.hash.as_slice()).ok()?),
    ))
}

/// The log's `tamper_alert` events by the refused event's hash: (event id, leaf, fields).
type LoggedAlerts = HashMap<String, (Uuid, u64, Vec<String>)>;

/// Every stored tamper alert is evidence the device signed (its own hash and signature
/// check out) and is recorded in the log with the same hash and kind; every alert the log
/// records is stored. So an alert cannot be removed, altered or made up unseen.
async fn verify_alerts(
    store: &Store,
    clinic: Uuid,
    keys: &HashMap<Uuid, (Recorder, PublicKey)>,
    mut logged: LoggedAlerts,
) -> Result<(), VerifyError> {
    let rows = store.alerts_as_stored(clinic).await?;
    for row in rows {
        let device_id = uuid(&row.device_id)?;
        let device_seq = u64::try_from(row.device_seq).unwrap_or(u64::MAX);
        let fail = |problem| -> VerifyError {
            Tampered {
                clinic_id: clinic,
                location: Location::Alert {
                    device_id,
                    device_seq,
                },
                problem,
            }
            .into()
        };
        let event: AuditEvent =
            serde_json::from_str(&row.event_json).map_err(|_| fail(Problem::Malformed))?;
        if event.clinic_id != clinic
            || event.device_id != device_id
            || event.device_seq != device_seq
        {
            return Err(fail(Problem::Malformed));
        }
        let hash = event.hash();
        if Hash32::from_hex(&row.hash) != Some(hash) {
            return Err(fail(Problem::HashMismatch));
        }
        match keys.get(&device_id) {
            Some((Recorder::Device, key)) => {
                if !verify_hex(key, &event.canonical_bytes(), &row.signature) {
                    return Err(fail(Problem::BadSignature));
                }
            }
            _ => return Err(fail(Problem::UnknownDevice)),
        }
        let Some((logged_id, _, fields)) = logged.remove(&hash.to_hex()) else {
            return Err(fail(Problem::AlertNotLogged));
        };
        let kind = row.kind.as_str();
        let linked = row.logged_event_id.as_deref().map(uuid).transpose()?;
        if fields != [kind] || linked != Some(logged_id) {
            return Err(fail(Problem::AlertMismatch));
        }
    }
    if let Some((event_id, leaf_index, _)) = logged.into_values().min_by_key(|(_, leaf, _)| *leaf) {
        return Err(Tampered {
            clinic_id: clinic,
            location: Location::Event {
                event_id,
                leaf_index,
            },
            problem: Problem::AlertMissing,
        }
        .into());
    }
    Ok(())
}

/// Every device chain in sequence order: each event links to the one before it; a
/// missing sequence is a gap (reported), not tampering, and the link across it is unchecked.
async fn verify_chains(
    store: &Store,
    clinic: Uuid,
    report: &mut Report,
) -> Result<(), VerifyError> {
    let mut rows = store.chain_events(clinic);
    let mut last: Option<(Uuid, u64, Hash32)> = None;
    while let Some(row) = rows.try_next().await? {
        let device = uuid(&row.device_id)?;
        let seq = u64::try_from(row.device_seq).unwrap_or(0);
        let event: AuditEvent = serde_json::from_str(&row.event_json)
            .map_err(|_| VerifyError::Store(ServerError::Internal("stored event malformed")))?;
        let hash = Hash32::from_hex(&row.hash).unwrap_or_default();
        let here = Location::Event {
            event_id: event.id,
            leaf_index: row
                .leaf_index
                .and_then(|l| u64::try_from(l).ok())
                .unwrap_or(u64::MAX),
        };
        let broken = |problem| -> VerifyError {
            Tampered {
                clinic_id: clinic,
                location: here.clone(),
                problem,
            }
            .into()
        };
        let expected_prev = match last {
            Some((d, s, h)) if d == device => {
                if seq <= s {
                    return Err(broken(Problem::SequenceOutOfOrder));
                }
                if seq > s + 1 {
                    report.gaps.push((device, s + 1, seq - 1));
                    None
                } else {
                    Some(h)
                }
            }
            _ if seq == 1 => Some(Hash32::GENESIS),
            _ => {
                report.gaps.push((device, 1, seq - 1));
                None
            }
        };
        if expected_prev.is_some_and(|p| p != event.prev_hash) {
            return Err(broken(Problem::ChainBroken));
        }
        last = Some((device, seq, hash));
    }
    Ok(())
}
