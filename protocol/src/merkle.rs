//! A clinic's audit log as an append-only Merkle tree, RFC 9162 §2.1: the leaf hash of an
//! event is SHA-256(0x00 || event hash), an interior node SHA-256(0x01 || left || right),
//! and the empty tree's root SHA-256 of nothing.
//!
//! The server stores only *perfect* subtrees (2^level leaves starting at a multiple of
//! 2^level), which never change once complete. Every other node a proof needs lies on the
//! right edge of a tree whose size is not a power of two; its hash is the fold of the
//! perfect subtrees covering its range ([`decompose`]). `ct-merkle` decides which nodes a
//! proof holds and verifies proofs, so the proof format is the RFC's and not ours; this
//! module maps its node numbering onto perfect subtrees, which it cannot do for us because
//! its own tree lives in memory and a clinic's log outgrows memory.

use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use serde::{Deserialize, Serialize};
use sha2_11::{Digest, Sha256};
use uuid::Uuid;

use crate::audit::Hash32;

/// A perfect subtree: leaves `[index << level, (index + 1) << level)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u32,
    pub index: u64,
}

impl NodeId {
    pub fn leaf(index: u64) -> Self {
        Self { level: 0, index }
    }
}

fn sha256(parts: &[&[u8]]) -> Hash32 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    Hash32(h.finalize().into())
}

/// The leaf hash of an event, from the event's hash.
pub fn leaf_hash(event_hash: &Hash32) -> Hash32 {
    sha256(&[&[0x00], &event_hash.0])
}

/// An interior node's hash.
pub fn node_hash(left: &Hash32, right: &Hash32) -> Hash32 {
    sha256(&[&[0x01], &left.0, &right.0])
}

/// The root of the empty tree.
pub fn empty_root() -> Hash32 {
    sha256(&[])
}

/// The perfect subtrees covering leaves `[start, end)`, left to right. For the ranges that
/// occur in an RFC 9162 tree they shrink from left to right, so folding them from the
/// right ([`fold`]) gives the range's Merkle hash.
pub fn decompose(mut start: u64, end: u64) -> Vec<NodeId> {
    let mut out = Vec::new();
    while start < end {
        let aligned = if start == 0 {
            63
        } else {
            start.trailing_zeros()
        };
        let fits = 63 - (end - start).leading_zeros();
        let level = aligned.min(fits);
        out.push(NodeId {
            level,
            index: start >> level,
        });
        start += 1 << level;
    }
    out
}

/// The hash of a range from its perfect subtrees (as listed by [`decompose`]).
pub fn fold(hashes: &[Hash32]) -> Option<Hash32> {
    let (last, rest) = hashes.split_last()?;
    Some(rest.iter().rev().fold(*last, |acc, h| node_hash(h, &acc)))
}

/// The nodes of a proof, each as the perfect subtrees whose fold is its hash.
pub type ProofPlan = Vec<Vec<NodeId>>;

/// `ct-merkle` numbers nodes as an array-based tree (RFC 9420 appendix C); node `k` sits at
/// level `trailing_ones(k)` and covers that level's span, cut off at the tree's size.
fn plan_for(ct_indices: Vec<u64>, tree_size: u64) -> ProofPlan {
    ct_indices
        .into_iter()
        .map(|k| {
            let level = k.trailing_ones();
            let start = (k >> (level + 1)) << level;
            let end = start.saturating_add(1 << level).min(tree_size);
            decompose(start, end)
        })
        .collect()
}

/// Which stored nodes prove leaf `leaf_index` in the tree of `tree_size` leaves.
pub fn inclusion_plan(tree_size: u64, leaf_index: u64) -> Result<ProofPlan, ProofError> {
    if leaf_index >= tree_size || tree_size > MAX_LEAVES {
        return Err(ProofError::OutOfRange);
    }
    Ok(plan_for(
        ct_merkle::indices_for_inclusion_proof(tree_size, leaf_index),
        tree_size,
    ))
}

/// Which stored nodes prove that the tree of `old_size` is a prefix of the one of `new_size`.
pub fn consistency_plan(old_size: u64, new_size: u64) -> Result<ProofPlan, ProofError> {
    if old_size == 0 || old_size > new_size || new_size > MAX_LEAVES {
        return Err(ProofError::OutOfRange);
    }
    Ok(plan_for(
        ct_merkle::indices_for_consistency_proof(old_size, new_size - old_size),
        new_size,
    ))
}

/// Every node of a plan, for fetching them in one go.
pub fn plan_nodes(plan: &ProofPlan) -> Vec<NodeId> {
    let mut nodes: Vec<NodeId> = plan.iter().flatten().copied().collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
}

/// The proof's hashes, given the stored nodes; `None` if one is missing.
pub fn assemble(plan: &ProofPlan, node: impl Fn(NodeId) -> Option<Hash32>) -> Option<Vec<Hash32>> {
    plan.iter()
        .map(|parts| {
            let hashes = parts
                .iter()
                .map(|id| node(*id))
                .collect::<Option<Vec<_>>>()?;
            fold(&hashes)
        })
        .collect()
}

/// Largest tree `ct-merkle` handles; far beyond any clinic's log.
const MAX_LEAVES: u64 = u64::MAX / 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("index or tree size out of range")]
    OutOfRange,
    #[error("the proof does not verify")]
    Invalid,
}

fn root_of(root: &Hash32, size: u64) -> RootHash<Sha256> {
    RootHash::new(root.0.into(), size)
}

fn concat(proof: &[Hash32]) -> Vec<u8> {
    proof.iter().flat_map(|h| h.0).collect()
}

/// Checks that the event with `event_hash` is leaf `leaf_index` of the tree with this root.
pub fn verify_inclusion(
    root: &Hash32,
    tree_size: u64,
    leaf_index: u64,
    event_hash: &Hash32,
    proof: &[Hash32],
) -> Result<(), ProofError> {
    if leaf_index >= tree_size {
        return Err(ProofError::OutOfRange);
    }
    let proof =
        InclusionProof::<Sha256>::try_from_bytes(concat(proof)).map_err(|_| ProofError::Invalid)?;
    root_of(root, tree_size)
        .verify_inclusion(&event_hash.0, leaf_index, &proof)
        .map_err(|_| ProofError::Invalid)
}

/// Checks that the tree (`old_size`, `old_root`) is a prefix of (`new_size`, `new_root`).
pub fn verify_consistency(
    old_size: u64,
    old_root: &Hash32,
    new_size: u64,
    new_root: &Hash32,
    proof: &[Hash32],
) -> Result<(), ProofError> {
    if old_size == new_size {
        return if old_root == new_root && proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::Invalid)
        };
    }
    let proof = ConsistencyProof::<Sha256>::try_from_bytes(concat(proof))
        .map_err(|_| ProofError::Invalid)?;
    root_of(new_root, new_size)
        .verify_consistency(&root_of(old_root, old_size), &proof)
        .map_err(|_| ProofError::Invalid)
}

/// The right edge of a growing tree: its perfect subtrees, largest first. Appending needs
/// only these, so ingest and the verifier stream any number of leaves in O(log n) memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash32>,
}

impl Frontier {
    /// The stored nodes that make up the frontier of a tree of `size` leaves.
    pub fn ids(size: u64) -> Vec<NodeId> {
        decompose(0, size)
    }

    /// Rebuilds a frontier from the hashes of [`Frontier::ids`], in that order.
    pub fn from_nodes(size: u64, nodes: Vec<Hash32>) -> Option<Self> {
        (nodes.len() == Self::ids(size).len()).then_some(Self { size, nodes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf (by its event's hash); returns every perfect subtree it completes,
    /// the new leaf first.
    pub fn push(&mut self, event_hash: &Hash32) -> Vec<(NodeId, Hash32)> {
        let mut id = NodeId::leaf(self.size);
        let mut hash = leaf_hash(event_hash);
        let mut completed = vec![(id, hash)];
        while id.index % 2 == 1 {
            let Some(left) = self.nodes.pop() else { break };
            hash = node_hash(&left, &hash);
            id = NodeId {
                level: id.level + 1,
                index: id.index / 2,
            };
            completed.push((id, hash));
        }
        self.nodes.push(hash);
        self.size += 1;
        completed
    }

    /// The root hash of the tree so far.
    pub fn root(&self) -> Hash32 {
        fold(&self.nodes).unwrap_or_else(empty_root)
    }
}

/// A signed statement of a clinic's log at one moment: its size and root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Checkpoint {
    pub clinic_id: Uuid,
    pub tree_size: u64,
    pub root_hash: Hash32,
    /// UTC milliseconds since the Unix epoch.
    pub issued_at_ms: i64,
}

const CHECKPOINT_TAG: &[u8] = b"clinicdesk-checkpoint-v1\0";

impl Checkpoint {
    /// The bytes the server signs: tag, clinic id (16), tree size (u64), root (32), time (i64).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CHECKPOINT_TAG.len() + 64);
        out.extend_from_slice(CHECKPOINT_TAG);
        out.extend_from_slice(self.clinic_id.as_bytes());
        out.extend_from_slice(&self.tree_size.to_be_bytes());
        out.extend_from_slice(&self.root_hash.0);
        out.extend_from_slice(&self.issued_at_ms.to_be_bytes());
        out
    }
}

/// A checkpoint with the server audit key's Ed25519 signature (hex) of its canonical bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub signature: String,
}

/// An inclusion proof of one leaf against a tree size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InclusionEvidence {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub hashes: Vec<Hash32>,
}

/// A consistency proof between two tree sizes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsistencyEvidence {
    pub old_size: u64,
    pub new_size: u64,
    pub hashes: Vec<Hash32>,
}

#[cfg(test)]
mod tests {
    use ct_merkle::mem_backed_tree::MemoryBackedTree;

    use super::*;

    fn event_hash(i: u64) -> Hash32 {
        sha256(&[&i.to_be_bytes()])
    }

    /// The in-memory tree of `ct-merkle` is the oracle for roots and proofs.
    fn oracle(n: u64) -> MemoryBackedTree<Sha256, [u8; 32]> {
        let mut t = MemoryBackedTree::new();
        for i in 0..n {
            t.push(event_hash(i).0);
        }
        t
    }

    /// All perfect subtrees of a tree of `n` leaves, as a store would hold them.
    fn stored(n: u64) -> (Frontier, std::collections::HashMap<NodeId, Hash32>) {
        let mut f = Frontier::default();
        let mut nodes = std::collections::HashMap::new();
        for i in 0..n {
            nodes.extend(f.push(&event_hash(i)));
        }
        (f, nodes)
    }

    #[test]
    fn empty_tree_root_is_sha256_of_nothing() {
        assert_eq!(
            empty_root().to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Frontier::default().root(), empty_root());
    }

    #[test]
    fn roots_and_proofs_match_ct_merkle_for_every_small_tree() {
        for n in 1..=70u64 {
            let tree = oracle(n);
            let (frontier, nodes) = stored(n);
            let root = frontier.root();
            assert_eq!(
                root.0,
                <[u8; 32]>::from(*tree.root().as_bytes()),
                "root n={n}"
            );
            for i in 0..n {
                let plan = inclusion_plan(n, i).unwrap();
                let proof = assemble(&plan, |id| nodes.get(&id).copied()).unwrap();
                assert_eq!(concat(&proof), tree.prove_inclusion(i as usize).as_bytes());
                verify_inclusion(&root, n, i, &event_hash(i), &proof).unwrap();
                assert_eq!(
                    verify_inclusion(&root, n, i, &event_hash(i + 1), &proof),
                    Err(ProofError::Invalid)
                );
            }
            for old in 1..=n {
                let (old_frontier, _) = stored(old);
                let plan = consistency_plan(old, n).unwrap();
                let proof = assemble(&plan, |id| nodes.get(&id).copied()).unwrap();
                verify_consistency(old, &old_frontier.root(), n, &root, &proof).unwrap();
                if old < n {
                    assert_eq!(
                        verify_consistency(old, &event_hash(0), n, &root, &proof),
                        Err(ProofError::Invalid)
                    );
                }
            }
        }
    }

    #[test]
    fn frontier_rebuilds_from_its_stored_nodes() {
        for n in 0..40u64 {
            let (frontier, nodes) = stored(n);
            let ids = Frontier::ids(n);
            let hashes = ids.iter().map(|id| nodes[id]).collect();
            let mut rebuilt = Frontier::from_nodes(n, hashes).unwrap();
            assert_eq!(rebuilt, frontier);
            let mut grown = frontier.clone();
            grown.push(&event_hash(n));
            rebuilt.push(&event_hash(n));
            assert_eq!(rebuilt.root(), grown.root());
        }
    }

    #[test]
    fn checkpoint_encoding_is_pinned() {
        let c = Checkpoint {
            clinic_id: Uuid::from_u128(2),
            tree_size: 7,
            root_hash: Hash32([9; 32]),
            issued_at_ms: 1_790_000_000_123,
        };
        let bytes = c.canonical_bytes();
        assert_eq!(bytes.len(), CHECKPOINT_TAG.len() + 16 + 8 + 32 + 8);
        assert_eq!(
            sha256(&[&bytes]).to_hex(),
            "f698573984cdb1a4f2eed9c99f4a84182ddfc3d47bf27fb3276c7f85d51eaeef"
        );
    }
}
