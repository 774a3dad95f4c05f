//! The clinic's Merkle log in the database: appending leaves inside the ingest
//! transaction, issuing signed checkpoints, and serving inclusion and consistency proofs.
//! The tree math is `clinicdesk_protocol::merkle`; the statements are
//! `crate::store::audit_log`'s; this module decides what to store and fetch, and when.

use std::collections::HashMap;

use clinicdesk_protocol::audit::Hash32;
use clinicdesk_protocol::merkle::{
    Checkpoint, ConsistencyEvidence, Frontier, InclusionEvidence, NodeId, ProofPlan,
    SignedCheckpoint, assemble, consistency_plan, inclusion_plan, plan_nodes,
};
use sqlx::AnyConnection;
use uuid::Uuid;

use super::key::AuditKey;
use crate::error::ServerError;
use crate::scope::{ClinicScope, Console};
use crate::store::sql::{Script, Statement};
use crate::store::{NodeRows, Store};

pub use crate::store::clinics::lock_clinic;

fn to_i64(v: u64) -> Result<i64, ServerError> {
    i64::try_from(v).map_err(|_| ServerError::Internal("log index overflow"))
}

/// Perfect subtrees below this level (under 16 leaves) are not stored: each is computed
/// from at most eight event hashes when a proof or a frontier needs it. Storing them cost
/// every event about two node rows; storing the rest costs one row per eight events.
pub(crate) const LOWEST_STORED_LEVEL: u32 = 4;

/// The checkpoint of exactly `tree_size`, if one was issued.
pub async fn checkpoint_at(
    conn: &mut AnyConnection,
    clinic: Uuid,
    tree_size: u64,
) -> Result<Option<SignedCheckpoint>, ServerError> {
    Store::checkpoint_at(conn, clinic, tree_size).await
}

/// The leaf index of a stored event of the clinic.
pub async fn leaf_of(
    conn: &mut AnyConnection,
    clinic: Uuid,
    event_id: Uuid,
) -> Result<Option<u64>, ServerError> {
    Store::leaf_of(conn, clinic, event_id).await
}

/// Where the log is read: in the caller's connection (or transaction), or on a connection
/// the store takes for this read alone.
enum Reader<'a> {
    On(&'a mut AnyConnection),
    Alone(&'a Store, &'a ClinicScope),
}

impl Reader<'_> {
    /// The hashes of perfect subtrees of the clinic's log, stored or computed.
    async fn nodes_of(
        &mut self,
        clinic: Uuid,
        ids: &[NodeId],
    ) -> Result<HashMap<NodeId, Hash32>, ServerError> {
        let (stored, computed): (Vec<NodeId>, Vec<NodeId>) =
            ids.iter().partition(|id| id.level >= LOWEST_STORED_LEVEL);
        let spans: Vec<(u64, u64)> = computed
            .iter()
            .map(|id| (id.index << id.level, (id.index + 1) << id.level))
            .collect();
        let (mut out, events) = match self {
            Reader::On(conn) => Store::log_nodes(conn, clinic, &stored, &spans).await?,
            Reader::Alone(store, scope) => store.log_nodes_alone(scope, &stored, &spans).await?,
        };
        for (id, (start, end)) in computed.into_iter().zip(spans) {
            let mut subtree = Frontier::default();
            for leaf in start..end {
                subtree.push(
                    events
                        .get(&leaf)
                        .ok_or(ServerError::Internal("log leaf missing"))?,
                );
            }
            // A perfect subtree's root is its node hash.
            out.insert(id, subtree.root());
        }
        Ok(out)
    }

    async fn prove(&mut self, clinic: Uuid, plan: &ProofPlan) -> Result<Vec<Hash32>, ServerError> {
        let nodes = self.nodes_of(clinic, &plan_nodes(plan)).await?;
        assemble(plan, |id| nodes.get(&id).copied())
            .ok_or(ServerError::Internal("log node missing"))
    }

    async fn inclusion(
        mut self,
        clinic: Uuid,
        leaf_index: u64,
        tree_size: u64,
    ) -> Result<InclusionEvidence, ServerError> {
        let plan = inclusion_plan(tree_size, leaf_index)
            .map_err(|_| ServerError::BadRequest { field: "tree_size" })?;
        Ok(InclusionEvidence {
            leaf_index,
            tree_size,
            hashes: self.prove(clinic, &plan).await?,
        })
    }
}

/// The right edge of the clinic's tree as stored.
pub async fn frontier(conn: &mut AnyConnection, clinic: Uuid) -> Result<Frontier, ServerError> {
    let size = Store::tree_size(&mut *conn, clinic).await?;
    frontier_at(conn, clinic, size).await
}

/// The right edge of the clinic's tree of `size` leaves.
pub(crate) async fn frontier_at(
    conn: &mut AnyConnection,
    clinic: Uuid,
    size: u64,
) -> Result<Frontier, ServerError> {
    let ids = Frontier::ids(size);
    let nodes = Reader::On(conn).nodes_of(clinic, &ids).await?;
    Frontier::from_nodes(size, ids.iter().map(|id| nodes[id]).collect())
        .ok_or(ServerError::Internal("log frontier malformed"))
}

/// Events appended to a clinic's log in memory, and the stored nodes they complete. Each
/// event's leaf index goes into its row (`audit_events.leaf_index`), which is unique per
/// clinic: if the tree was not the stored log's frontier, storing fails on that key
/// rather than storing a fork.
pub(crate) struct Growth<'a> {
    tree: &'a mut Frontier,
    nodes: NodeRows,
}

impl<'a> Growth<'a> {
    pub(crate) fn new(tree: &'a mut Frontier, clinic: Uuid) -> Self {
        Self {
            tree,
            nodes: NodeRows::new(clinic),
        }
    }

    /// Appends the event with this hash as the next leaf; answers its leaf index.
    pub(crate) fn push(&mut self, event_hash: &Hash32) -> Result<i64, ServerError> {
        let leaf = to_i64(self.tree.size())?;
        for (id, hash) in self.tree.push(event_hash) {
            if id.level >= LOWEST_STORED_LEVEL {
                self.nodes.push(id, &hash)?;
            }
        }
        Ok(leaf)
    }

    /// The statements that store the completed nodes, a hundred rows each.
    pub(crate) fn into_statements(self) -> Vec<Statement> {
        self.nodes.into_statements()
    }
}

/// Signs and stores a checkpoint of the tree as it stands, unless one of that size exists
/// (then that one is the answer: one statement per size keeps them trivially consistent).
pub async fn checkpoint(
    conn: &mut AnyConnection,
    key: &AuditKey,
    clinic: Uuid,
    tree: &Frontier,
    now_ms: i64,
) -> Result<SignedCheckpoint, ServerError> {
    let latest = Store::latest_checkpoint(&mut *conn, clinic).await?;
    let (signed, fresh) = sign_checkpoint(key, clinic, tree, now_ms, latest);
    if fresh {
        Store::add_checkpoint(conn, &signed).await?;
    }
    Ok(signed)
}

/// The checkpoint of `tree`, the clinic's log as stored, given `latest`, its newest
/// checkpoint read in the same transaction: that one if it is of this size (no checkpoint
/// is ever of a larger one), else a new one signed now, still to be stored (then the flag
/// is true). Issue times never go backwards along the log, even if the clock does.
pub(crate) fn sign_checkpoint(
    key: &AuditKey,
    clinic: Uuid,
    tree: &Frontier,
    now_ms: i64,
    latest: Option<SignedCheckpoint>,
) -> (SignedCheckpoint, bool) {
    let after = match latest {
        Some(latest) if latest.checkpoint.tree_size == tree.size() => return (latest, false),
        Some(latest) => latest.checkpoint.issued_at_ms,
        None => i64::MIN,
    };
    let checkpoint = Checkpoint {
        clinic_id: clinic,
        tree_size: tree.size(),
        root_hash: tree.root(),
        issued_at_ms: now_ms.max(after),
    };
    let signature = key.sign_hex(&checkpoint.canonical_bytes());
    (
        SignedCheckpoint {
            checkpoint,
            signature,
        },
        true,
    )
}

/// Proof that leaf `leaf_index` is in the clinic's tree of `tree_size` leaves.
pub async fn inclusion(
    conn: &mut AnyConnection,
    clinic: Uuid,
    leaf_index: u64,
    tree_size: u64,
) -> Result<InclusionEvidence, ServerError> {
    Reader::On(conn)
        .inclusion(clinic, leaf_index, tree_size)
        .await
}

/// [`inclusion`] read on a connection of the store's own, outside any transaction: for a
/// tree size whose checkpoint is committed, which never changes.
pub(crate) async fn inclusion_alone(
    store: &Store,
    scope: &ClinicScope,
    leaf_index: u64,
    tree_size: u64,
) -> Result<InclusionEvidence, ServerError> {
    Reader::Alone(store, scope)
        .inclusion(scope.clinic_id(), leaf_index, tree_size)
        .await
}

/// Proof that the clinic's tree of `old_size` is a prefix of the one of `new_size`.
pub async fn consistency(
    conn: &mut AnyConnection,
    clinic: Uuid,
    old_size: u64,
    new_size: u64,
) -> Result<ConsistencyEvidence, ServerError> {
    let hashes = if old_size == new_size {
        Vec::new()
    } else {
        let plan = consistency_plan(old_size, new_size)
            .map_err(|_| ServerError::BadRequest { field: "old_size" })?;
        Reader::On(conn).prove(clinic, &plan).await?
    };
    Ok(ConsistencyEvidence {
        old_size,
        new_size,
        hashes,
    })
}

/// Puts events stored before the log existed (data directories older than the log) into
/// their clinic's log, in the order they were stored, and signs a checkpoint. Runs at
/// start, and only for clinics whose log is still empty: an event slipped into the table
/// of a clinic that has a log is never adopted, and `audit verify` names it.
pub async fn adopt_unlogged(
    store: &Store,
    key: &AuditKey,
    now_ms: i64,
) -> Result<u64, ServerError> {
    let mut adopted = 0u64;
    for clinic in store.log_clinics().await? {
        let scope = ClinicScope::of_console(&Console::operator(), clinic);
        if !store.unlogged(&scope).await? {
            continue;
        }
        let mut tx = store.begin_write().await?;
        tx.lock_clinic(clinic).await?;
        let events = Store::unlogged_events(&mut tx, clinic).await?;
        let count = events.len();
        let mut tree = Frontier::default();
        let mut growth = Growth::new(&mut tree, clinic);
        let mut script = Script::default();
        for (id, hash) in events {
            script.push(Store::leaf_placement(growth.push(&hash)?, id));
        }
        script.extend(growth.into_statements());
        script.execute(&mut tx).await?;
        // Workstations' upload progress; the server chain's tip is its last event.
        for device in Store::workstation_chains(&mut tx, clinic).await? {
            super::ingest::advance_head(&mut tx, &scope, device).await?;
        }
        checkpoint(&mut tx, key, clinic, &tree, now_ms).await?;
        tx.commit().await?;
        adopted += u64::try_from(count).unwrap_or(u64::MAX);
        tracing::info!(%clinic, events = count, "existing audit events added to the log");
    }
    Ok(adopted)
}

/// Signs a checkpoint of the clinic's log as it stands, in its own transaction (or returns
/// the one of that size).
pub async fn checkpoint_now(
    store: &Store,
    key: &AuditKey,
    clinic: Uuid,
    now_ms: i64,
) -> Result<SignedCheckpoint, ServerError> {
    let mut tx = store.begin_write().await?;
    tx.lock_clinic(clinic).await?;
    let tree = frontier(&mut tx, clinic).await?;
    let signed = checkpoint(&mut tx, key, clinic, &tree, now_ms).await?;
    tx.commit().await?;
    Ok(signed)
}

/// Signs a checkpoint for every clinic whose log grew since its newest one: the server's
/// regular publication, so events recorded between uploads (the server's own) are covered
/// by a signed tree head within one interval. Returns how many it signed.
pub async fn checkpoint_grown(
    store: &Store,
    key: &AuditKey,
    now_ms: i64,
) -> Result<usize, ServerError> {
    let mut signed = 0;
    for clinic in store.log_clinics().await? {
        // The server's own publication, as at start-up: the console's authority, one
        // clinic at a time (each clinic's log is behind its wall).
        let scope = ClinicScope::of_console(&Console::operator(), clinic);
        let (size, latest) = store.log_progress(&scope).await?;
        let published = latest.map_or(0, |c| c.checkpoint.tree_size);
        if size <= published {
            continue;
        }
        checkpoint_now(store, key, clinic, now_ms).await?;
        signed += 1;
    }
    Ok(signed)
}
