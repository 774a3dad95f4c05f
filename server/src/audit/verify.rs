//! `clinicdesk-server audit verify`: recomputes, from the stored events alone, every
//! event's hash and signature, every device chain, every clinic's Merkle tree and every
//! published checkpoint (root and signature), every tamper alert against the log's record
//! of it, and every column stored beside an event for searches and reports to select on
//! (its id, device and sequence, actor, patient, action and time) against the signed event.
//!
//! It names every problem it finds, each by its event and leaf (or node, checkpoint or
//! alert), and goes on to the end: a row that cannot be read is a finding, not a stop. Only
//! a log whose leaves no longer line up (a leaf or a stored subtree missing) ends the walk of
//! that clinic, since nothing after it can be placed; the other clinics are still walked.
//!
//! It trusts only the device public keys and the server's audit public key (which signs
//! checkpoints and each clinic's server chain); an attacker
//! with write access to the database (triggers dropped) is caught when they modify,
//! delete, insert or reorder events, leaves or checkpoints, except for removing the tail
//! of the log together with every checkpoint that covers it: that needs a checkpoint kept
//! elsewhere (a device's receipt, an export), which `--checkpoint` checks against.

mod records;

use std::collections::HashMap;

use clinicdesk_protocol::audit::{AuditAction, AuditEvent, Hash32, Recorder};
use clinicdesk_protocol::merkle::{Frontier, SignedCheckpoint};
use clinicdesk_protocol::wire::AuditReceipt;
use futures_util::TryStreamExt;
use uuid::Uuid;

use super::key::{PublicKey, verify_hex};
use super::log::LOWEST_STORED_LEVEL;
use crate::error::ServerError;
use crate::scope::{ClinicScope, Console};
use crate::store::audit_verify::{self, LoggedEventRow, NodeRow};
use crate::store::{ClinicTx, Store};
use clinicdesk_protocol::rotation::ServerKeys;

/// What is wrong, and where.
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
    /// A stored version in a record's history (as its row names it).
    Version {
        resource_type: String,
        record_id: String,
        version: i64,
    },
    /// A record's current content.
    Record {
        resource_type: String,
        record_id: String,
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
            Location::Version {
                resource_type,
                record_id,
                version,
            } => write!(f, "{resource_type} {record_id} version {version}"),
            Location::Record {
                resource_type,
                record_id,
            } => write!(f, "{resource_type} {record_id} as stored now"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("the log has no leaf here (an event was removed or renumbered)")]
    LeafMissing,
    #[error("the stored event does not parse or contradicts its row")]
    Malformed,
    /// A column stored beside the event, which searches and reports select on, says
    /// something other than the signed event.
    #[error("its {0} column does not match the signed event")]
    Column(&'static str),
    /// A column holds a value that cannot be read as its type.
    #[error("its {0} column cannot be read")]
    Unreadable(&'static str),
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
    #[error("no audit event in the log recorded this version")]
    VersionUnrecorded,
    #[error("its content does not match the hash its audit event committed to")]
    VersionContent,
    #[error("the version this change stored is missing from the record's history")]
    VersionMissing,
    #[error("the record's current content is not its latest version")]
    CurrentMismatch,
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

/// Every problem found, in the order the walk met them (clinic by clinic, each in log
/// order, then its chains and alerts). Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Findings(Vec<Tampered>);

impl Findings {
    /// The first problem in walk order: for one change, the place it was made.
    pub fn first(&self) -> &Tampered {
        &self.0[0]
    }

    pub fn all(&self) -> &[Tampered] {
        &self.0
    }
}

impl std::fmt::Display for Findings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.len() {
            1 => write!(f, "{}", self.first()),
            n => write!(f, "{} (and {} more)", self.first(), n - 1),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Tampered(Findings),
    #[error("cannot read the store")]
    Store(#[from] ServerError),
}

fn uuid(s: &str) -> Result<Uuid, VerifyError> {
    Uuid::parse_str(s).map_err(|_| VerifyError::Store(ServerError::Internal("stored id malformed")))
}

/// One clinic's walk: what it has found so far.
struct Walk<'f> {
    clinic: Uuid,
    found: &'f mut Vec<Tampered>,
}

impl Walk<'_> {
    fn note(&mut self, location: Location, problem: Problem) {
        self.found.push(Tampered {
            clinic_id: self.clinic,
            location,
            problem,
        });
    }
}

/// Verifies every clinic's log, one clinic at a time with the console's authority (each
/// clinic's trail is behind its wall). `trusted` checkpoints (from receipts or exports)
/// must each match the log too. Reads the events and the stored subtrees side by side: the
/// store's pool must allow two connections at once.
pub async fn verify_all(
    console: &Console,
    store: &Store,
    server_keys: &ServerKeys,
    trusted: &[SignedCheckpoint],
) -> Result<Report, VerifyError> {
    let mut report = Report::default();
    let mut found = Vec::new();
    let clinics = store.clinics_to_verify().await?;
    for clinic in clinics {
        let clinic = uuid(&clinic)?;
        let mine: Vec<SignedCheckpoint> = trusted
            .iter()
            .filter(|c| c.checkpoint.clinic_id == clinic)
            .cloned()
            .collect();
        let mut walk = Walk {
            clinic,
            found: &mut found,
        };
        let scope = ClinicScope::of_console(console, clinic);
        verify_clinic(store, &scope, server_keys, &mut walk, &mine, &mut report).await?;
        report.clinics += 1;
    }
    if found.is_empty() {
        Ok(report)
    } else {
        Err(VerifyError::Tampered(Findings(found)))
    }
}

/// The key each chain of the clinic is signed with: a workstation's enrolled key, or the
/// server's audit key for the clinic's server chain, with who that recorder is.
/// The server chain's entry holds the current key; its events are checked against the key
/// of their time ([`ServerKeys::at`]).
async fn chain_keys(
    tx: &mut ClinicTx,
    server_keys: &ServerKeys,
) -> Result<HashMap<Uuid, (Recorder, PublicKey)>, VerifyError> {
    let rows = audit_verify::device_keys_as_stored(tx).await?;
    let mut keys = HashMap::new();
    for row in rows {
        let id = uuid(&row.id)?;
        if row.kind == "server" {
            keys.insert(id, (Recorder::Server, *server_keys.current()));
        } else if let Some(key) = PublicKey::from_hex(&row.public_key) {
            keys.insert(id, (Recorder::Device, key));
        }
    }
    Ok(keys)
}

async fn checkpoints(tx: &mut ClinicTx) -> Result<Vec<SignedCheckpoint>, VerifyError> {
    let clinic = tx.clinic_id();
    let rows = audit_verify::checkpoints_as_stored(tx).await?;
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

/// Checks the checkpoints whose size the tree has reached against its root.
fn check_due(walk: &mut Walk<'_>, tree: &Frontier, pending: &mut Vec<SignedCheckpoint>) {
    while let Some(c) = pending.last() {
        if c.checkpoint.tree_size != tree.size() {
            break;
        }
        if c.checkpoint.root_hash != tree.root() {
            walk.note(
                Location::Checkpoint(c.checkpoint.tree_size),
                Problem::RootMismatch,
            );
        }
        pending.pop();
    }
}

async fn verify_clinic(
    store: &Store,
    scope: &ClinicScope,
    server_keys: &ServerKeys,
    walk: &mut Walk<'_>,
    trusted: &[SignedCheckpoint],
    report: &mut Report,
) -> Result<(), VerifyError> {
    let mut tx = store.clinic_tx(scope).await?;
    report.alerts += u64::try_from(audit_verify::alert_count(&mut tx).await?).unwrap_or(0);
    let keys = chain_keys(&mut tx, server_keys).await?;
    let mut pending: Vec<SignedCheckpoint> = checkpoints(&mut tx).await?;
    let mut last_issued = i64::MIN;
    for c in &pending {
        let at = Location::Checkpoint(c.checkpoint.tree_size);
        let key = server_keys.at(c.checkpoint.issued_at_ms);
        if !verify_hex(key, &c.checkpoint.canonical_bytes(), &c.signature) {
            walk.note(at.clone(), Problem::CheckpointSignature);
        }
        if c.checkpoint.issued_at_ms < last_issued {
            walk.note(at, Problem::CheckpointTime);
        }
        last_issued = c.checkpoint.issued_at_ms;
    }
    pending.extend(trusted.iter().cloned());
    pending.sort_by_key(|c| std::cmp::Reverse(c.checkpoint.tree_size));

    let mut tree = Frontier::default();
    let mut logged_alerts = LoggedAlerts::new();
    let mut changes = records::Changes::default();
    check_due(walk, &tree, &mut pending);

    let mut rows = audit_verify::logged_events(&mut tx);
    // The stored subtrees in the order the walk completes them: by the leaf that
    // completes each, then upwards. Read beside the events, in a transaction of their own.
    let mut nodes_tx = store.clinic_tx(scope).await?;
    let mut nodes = audit_verify::log_nodes_in_walk_order(&mut nodes_tx);
    while let Some(row) = rows.try_next().await? {
        let index = row.leaf_index.and_then(|i| u64::try_from(i).ok());
        if index != Some(tree.size()) {
            // The leaves no longer line up: nothing after this can be placed.
            walk.note(Location::Leaf(tree.size()), Problem::LeafMissing);
            return Ok(());
        }
        let index = tree.size();
        let checked = check_event(
            walk,
            (&keys, server_keys),
            &row,
            index,
            &mut logged_alerts,
            &mut changes,
        );
        let Some(hash) = checked else {
            // Unreadable: the walk goes on with the hash the row claims, so the leaves
            // and checkpoints after it are still checked.
            let claimed = row.hash.as_deref().and_then(Hash32::from_hex);
            let leaf = claimed.unwrap_or(Hash32([0xff; 32]));
            if !push_leaf(walk, &mut tree, &mut nodes, &leaf).await? {
                return Ok(());
            }
            check_due(walk, &tree, &mut pending);
            continue;
        };
        if !push_leaf(walk, &mut tree, &mut nodes, &hash).await? {
            return Ok(());
        }
        report.events += 1;
        check_due(walk, &tree, &mut pending);
    }
    drop(rows);
    if let Some(node) = nodes.try_next().await? {
        let (level, index, _) = stored_node(&node).unwrap_or((u32::MAX, u64::MAX, Hash32::GENESIS));
        walk.note(Location::Node { level, index }, Problem::NodeBeyondLog);
        return Ok(());
    }
    drop(nodes);
    drop(nodes_tx);

    let unlogged = audit_verify::first_unlogged_event(&mut tx).await?;
    if let Some(id) = unlogged {
        walk.note(Location::Unlogged(uuid(&id)?), Problem::NotInLog);
    }
    // After the unlogged check, which names the event if the log's last one was unplaced.
    for c in pending.iter().rev() {
        walk.note(
            Location::Checkpoint(c.checkpoint.tree_size),
            Problem::CheckpointBeyondLog,
        );
    }
    report.checkpoints += u64::try_from(checkpoints(&mut tx).await?.len()).unwrap_or(0);
    verify_chains(&mut tx, walk, report).await?;
    verify_alerts(&mut tx, walk, (&keys, server_keys), logged_alerts).await?;
    // Read only: ending it either way leaves nothing behind.
    drop(tx);
    records::verify_records(store, scope, walk, changes).await
}

/// Checks one logged event: that it parses, agrees with every column derived from it, and
/// carries its recorded hash and a good signature. Notes each problem; returns the event's
/// hash (the leaf), or `None` when the stored event cannot be read at all.
fn check_event(
    walk: &mut Walk<'_>,
    (keys, server_keys): (&HashMap<Uuid, (Recorder, PublicKey)>, &ServerKeys),
    row: &LoggedEventRow,
    index: u64,
    logged_alerts: &mut LoggedAlerts,
    changes: &mut records::Changes,
) -> Option<Hash32> {
    let event: Option<AuditEvent> = row
        .event_json
        .as_deref()
        .and_then(|json| serde_json::from_str(json).ok());
    let Some(event) = event else {
        // Named by the row's id when that can be read, and by its leaf in any case.
        let here = match row.id.as_deref().map(Uuid::parse_str) {
            Some(Ok(event_id)) => Location::Event {
                event_id,
                leaf_index: index,
            },
            _ => Location::Leaf(index),
        };
        walk.note(here, Problem::Unreadable("event_json"));
        return None;
    };
    let here = Location::Event {
        event_id: event.id,
        leaf_index: index,
    };
    let hash = event.hash();
    if row.hash.as_deref().and_then(Hash32::from_hex) != Some(hash) {
        // The event is not what was recorded: what its columns agree with says nothing.
        walk.note(here.clone(), Problem::HashMismatch);
    } else {
        if event.clinic_id != walk.clinic {
            walk.note(here.clone(), Problem::Column("clinic_id"));
        }
        for (column, matches) in derived_columns(row, &event) {
            match matches {
                Some(true) => {}
                Some(false) => walk.note(here.clone(), Problem::Column(column)),
                None => walk.note(here.clone(), Problem::Unreadable(column)),
            }
        }
    }
    match keys.get(&event.device_id) {
        None => walk.note(here.clone(), Problem::UnknownDevice),
        Some((recorder, _)) if *recorder != event.recorded_by => {
            walk.note(here.clone(), Problem::Malformed);
        }
        Some((recorder, key)) => {
            // The server chain: the audit key in force when the event was recorded.
            let key = match recorder {
                Recorder::Server => server_keys.at(event.occurred_at_ms),
                Recorder::Device => key,
            };
            let signature = row.signature.as_deref().unwrap_or_default();
            if !verify_hex(key, &event.canonical_bytes(), signature) {
                walk.note(here.clone(), Problem::BadSignature);
            }
        }
    }
    changes.note(&event, index);
    if event.action == AuditAction::TamperAlert && event.recorded_by == Recorder::Server {
        logged_alerts.insert(event.resource_id.clone(), (event.id, index, event.fields));
    }
    Some(hash)
}

/// Each column stored beside the event that searches, reports and this walk select on, and
/// whether it holds exactly what the server writes for the signed event (`None`: the
/// column cannot be read as its type). Exact text, not the parsed value: a search binds the
/// id as the server writes it, so an upper-cased id would hide the row as surely as another.
fn derived_columns(row: &LoggedEventRow, event: &AuditEvent) -> [(&'static str, Option<bool>); 7] {
    let text = |column: &Option<String>, expected: String| {
        column.as_deref().map(|stored| stored == expected)
    };
    [
        ("id", text(&row.id, event.id.to_string())),
        (
            "device_id",
            text(&row.device_id, event.device_id.to_string()),
        ),
        (
            "device_seq",
            row.device_seq
                .map(|seq| u64::try_from(seq).ok() == Some(event.device_seq)),
        ),
        (
            "actor_user_id",
            text(&row.actor_user_id, event.actor_user_id.to_string()),
        ),
        (
            "patient_id",
            row.patient_id
                .as_ref()
                .map(|stored| *stored == event.patient_id.map(|p| p.to_string())),
        ),
        (
            "action",
            text(&row.action, event.action.as_str().to_owned()),
        ),
        (
            "occurred_at_ms",
            row.occurred_at_ms.map(|at| at == event.occurred_at_ms),
        ),
    ]
}

/// Adds a leaf to the tree and checks each stored subtree it completes. False when the
/// stored subtrees no longer line up with the walk (the clinic's walk ends there).
async fn push_leaf(
    walk: &mut Walk<'_>,
    tree: &mut Frontier,
    nodes: &mut (impl futures_util::Stream<Item = Result<NodeRow, ServerError>> + Unpin),
    leaf: &Hash32,
) -> Result<bool, VerifyError> {
    for (id, computed) in tree.push(leaf) {
        if id.level < LOWEST_STORED_LEVEL {
            continue;
        }
        let at = Location::Node {
            level: id.level,
            index: id.index,
        };
        let Some(node) = nodes.try_next().await? else {
            walk.note(at, Problem::NodeMissing);
            return Ok(false);
        };
        let stored = stored_node(&node);
        if stored.map(|(level, index, _)| (level, index)) != Some((id.level, id.index)) {
            walk.note(at, Problem::NodeMissing);
            return Ok(false);
        }
        if stored.map(|(_, _, hash)| hash) != Some(computed) {
            walk.note(at, Problem::NodeMismatch);
        }
    }
    Ok(true)
}

/// A stored node row: (level, index, hash), if well formed.
fn stored_node(row: &NodeRow) -> Option<(u32, u64, Hash32)> {
    Some((
        u32::try_from(row.level).ok()?,
        u64::try_from(row.index).ok()?,
        Hash32(<[u8; 32]>::try_from(row.hash.as_slice()).ok()?),
    ))
}

/// A refused event's alert: the event as stored, of this clinic and at the row's place,
/// hashing to the row's hash and signed by its device. Answers that hash.
fn event_evidence(
    row: &audit_verify::AlertRow,
    clinic: Uuid,
    (device_id, device_seq): (Uuid, u64),
    keys: &HashMap<Uuid, (Recorder, PublicKey)>,
) -> Result<Hash32, Problem> {
    let event =
        serde_json::from_str::<AuditEvent>(&row.event_json).map_err(|_| Problem::Malformed)?;
    if event.clinic_id != clinic || event.device_id != device_id || event.device_seq != device_seq {
        return Err(Problem::Malformed);
    }
    let hash = event.hash();
    if Hash32::from_hex(&row.hash) != Some(hash) {
        return Err(Problem::HashMismatch);
    }
    match keys.get(&device_id) {
        Some((Recorder::Device, key))
            if verify_hex(key, &event.canonical_bytes(), &row.signature) =>
        {
            Ok(hash)
        }
        Some((Recorder::Device, _)) => Err(Problem::BadSignature),
        _ => Err(Problem::UnknownDevice),
    }
}

/// A `rollback` alert: the receipt the workstation held, of this clinic's log, about the
/// row's device and sequence, naming the row's hash ([`AuditReceipt::digest`]) and signed by
/// the server's audit key in force when it was issued. Answers that hash.
fn rollback_evidence(
    row: &audit_verify::AlertRow,
    clinic: Uuid,
    (device_id, device_seq): (Uuid, u64),
    server_keys: &ServerKeys,
) -> Result<Hash32, Problem> {
    let receipt =
        serde_json::from_str::<AuditReceipt>(&row.event_json).map_err(|_| Problem::Malformed)?;
    if receipt.checkpoint.checkpoint.clinic_id != clinic
        || receipt.device_id != device_id
        || receipt.highest_contiguous_seq != device_seq
        || receipt.signature != row.signature
    {
        return Err(Problem::Malformed);
    }
    let hash = receipt.digest();
    if Hash32::from_hex(&row.hash) != Some(hash) {
        return Err(Problem::HashMismatch);
    }
    if !super::rollback::signed_by_server(server_keys, &receipt) {
        return Err(Problem::BadSignature);
    }
    Ok(hash)
}

/// The log's `tamper_alert` events by the refused event's hash: (event id, leaf, fields).
type LoggedAlerts = HashMap<String, (Uuid, u64, Vec<String>)>;

/// Every stored tamper alert is evidence its signer signed (an event its device signed, or
/// for a `rollback` a receipt the server signed: its own hash and signature check out) and is
/// recorded in the log with the same hash and kind; every alert the log records is stored.
/// So an alert cannot be removed, altered or made up unseen.
async fn verify_alerts(
    tx: &mut ClinicTx,
    walk: &mut Walk<'_>,
    (keys, server_keys): (&HashMap<Uuid, (Recorder, PublicKey)>, &ServerKeys),
    mut logged: LoggedAlerts,
) -> Result<(), VerifyError> {
    let rows = audit_verify::alerts_as_stored(tx).await?;
    for row in rows {
        let device_id = uuid(&row.device_id)?;
        let device_seq = u64::try_from(row.device_seq).unwrap_or(u64::MAX);
        let here = Location::Alert {
            device_id,
            device_seq,
        };
        let checked = if row.kind == super::rollback::KIND {
            rollback_evidence(&row, walk.clinic, (device_id, device_seq), server_keys)
        } else {
            event_evidence(&row, walk.clinic, (device_id, device_seq), keys)
        };
        let hash = match checked {
            Ok(hash) => hash,
            Err(problem) => {
                walk.note(here, problem);
                continue;
            }
        };
        let Some((logged_id, _, fields)) = logged.remove(&hash.to_hex()) else {
            walk.note(here, Problem::AlertNotLogged);
            continue;
        };
        let kind = row.kind.as_str();
        let linked = row.logged_event_id.as_deref().map(uuid).transpose()?;
        if fields != [kind] || linked != Some(logged_id) {
            walk.note(here, Problem::AlertMismatch);
        }
    }
    let mut missing: Vec<_> = logged.into_values().collect();
    missing.sort_by_key(|(_, leaf, _)| *leaf);
    for (event_id, leaf_index, _) in missing {
        walk.note(
            Location::Event {
                event_id,
                leaf_index,
            },
            Problem::AlertMissing,
        );
    }
    Ok(())
}

/// Every device chain in sequence order: each event links to the one before it; a
/// missing sequence is a gap (reported), not tampering, and the link across it is unchecked.
/// A row the log walk could not read is passed over here (it is already named).
async fn verify_chains(
    tx: &mut ClinicTx,
    walk: &mut Walk<'_>,
    report: &mut Report,
) -> Result<(), VerifyError> {
    let mut rows = audit_verify::chain_events(tx);
    let mut last: Option<(Uuid, u64, Hash32)> = None;
    while let Some(row) = rows.try_next().await? {
        let device = row
            .device_id
            .as_deref()
            .and_then(|d| Uuid::parse_str(d).ok());
        let seq = row.device_seq.and_then(|s| u64::try_from(s).ok());
        let event = row
            .event_json
            .as_deref()
            .and_then(|json| serde_json::from_str::<AuditEvent>(json).ok());
        let (Some(device), Some(seq), Some(event)) = (device, seq, event) else {
            continue;
        };
        let hash = row
            .hash
            .as_deref()
            .and_then(Hash32::from_hex)
            .unwrap_or_default();
        let here = Location::Event {
            event_id: event.id,
            leaf_index: row
                .leaf_index
                .and_then(|l| u64::try_from(l).ok())
                .unwrap_or(u64::MAX),
        };
        let expected_prev = match last {
            Some((d, s, h)) if d == device => {
                if seq <= s {
                    walk.note(here, Problem::SequenceOutOfOrder);
                    continue;
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
            walk.note(here, Problem::ChainBroken);
        }
        last = Some((device, seq, hash));
    }
    Ok(())
}
