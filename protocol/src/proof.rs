//! The byte strings a key signs outside the audit event itself: a device's login proof, its
//! recovery key's escrow proof, and the server's upload receipt.
//!
//! These bytes are pinned: the app signs and checks them, the server checks and signs them,
//! and the two are released separately, so a change of a single byte here makes every
//! signature across that boundary fail. A change is a new tag (`-v2`), never an edit; the
//! golden tests below fail on any other. Each rule starts with its own tag, so a signature
//! made for one rule never verifies as another, and variable-length parts carry a u32
//! length (big-endian) so no two inputs share bytes. The receipt's layout is specified in
//! `docs/audit-format.md` ("Receipt"); the checkpoint's bytes are `merkle`'s.

use uuid::Uuid;

use crate::audit::Hash32;
use crate::merkle::Checkpoint;

const LOGIN_TAG: &[u8] = b"clinicdesk-login-v1\0";
const ESCROW_TAG: &[u8] = b"clinicdesk-escrow-release-v1\0";
const RECEIPT_TAG: &[u8] = b"clinicdesk-receipt-v1\0";

/// The bytes a device signs to prove its key at login: a domain tag, the nonce, the
/// device and the username, so a signature cannot be replayed for another login.
pub fn login_proof_bytes(nonce: &str, device_id: Uuid, username: &str) -> Vec<u8> {
    length_prefixed(
        LOGIN_TAG,
        &[nonce.as_bytes(), device_id.as_bytes(), username.as_bytes()],
    )
}

/// The bytes a device's recovery key signs to have its escrowed secret released.
pub fn escrow_proof_bytes(nonce: &str, device_id: Uuid) -> Vec<u8> {
    length_prefixed(ESCROW_TAG, &[nonce.as_bytes(), device_id.as_bytes()])
}

/// The bytes the server signs as an upload's receipt: tag, device id (16), sequence (u64),
/// hash (32), the forked sequence numbers (u32 count, u64 each), then the checkpoint's
/// canonical bytes. `AuditReceipt::canonical_bytes` passes its own fields.
pub fn receipt_bytes(
    device_id: Uuid,
    highest_contiguous_seq: u64,
    contiguous_hash: &Hash32,
    forked: &[u64],
    checkpoint: &Checkpoint,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + forked.len() * 8);
    out.extend_from_slice(RECEIPT_TAG);
    out.extend_from_slice(device_id.as_bytes());
    out.extend_from_slice(&highest_contiguous_seq.to_be_bytes());
    out.extend_from_slice(&contiguous_hash.0);
    out.extend_from_slice(
        &u32::try_from(forked.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    for seq in forked {
        out.extend_from_slice(&seq.to_be_bytes());
    }
    out.extend_from_slice(&checkpoint.canonical_bytes());
    out
}

/// The tag, then each part as its u32 length and its bytes.
fn length_prefixed(tag: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut out = tag.to_vec();
    for part in parts {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::to_hex;

    const DEVICE: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0d01);

    // The expected bytes below were written from the layouts above (and the receipt's from
    // `docs/audit-format.md`) by a separate script, field by field, not copied from a run.

    #[test]
    fn login_proof_bytes_are_pinned() {
        assert_eq!(
            to_hex(&login_proof_bytes("nonce-1", DEVICE, "dr.émile")),
            concat!(
                "636c696e69636465736b2d6c6f67696e2d763100", // clinicdesk-login-v1\0
                "00000007",
                "6e6f6e63652d31", // nonce-1
                "00000010",
                "01930000000070008000000000000d01", // device id
                "00000009",
                "64722ec3a96d696c65", // dr.émile, UTF-8
            )
        );
    }

    #[test]
    fn escrow_proof_bytes_are_pinned() {
        assert_eq!(
            to_hex(&escrow_proof_bytes("nonce-1", DEVICE)),
            concat!(
                "636c696e69636465736b2d657363726f772d72656c656173652d763100", // tag
                "00000007",
                "6e6f6e63652d31", // nonce-1
                "00000010",
                "01930000000070008000000000000d01", // device id
            )
        );
    }

    #[test]
    fn receipt_bytes_are_pinned() {
        let checkpoint = Checkpoint {
            clinic_id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0c11),
            tree_size: 7,
            root_hash: Hash32([9; 32]),
            issued_at_ms: 1_790_000_000_123,
        };
        let bytes = receipt_bytes(DEVICE, 5, &Hash32([0xab; 32]), &[3, 4], &checkpoint);
        assert_eq!(
            to_hex(&bytes),
            concat!(
                "636c696e69636465736b2d726563656970742d763100", // clinicdesk-receipt-v1\0
                "01930000000070008000000000000d01",             // device id
                "0000000000000005",                             // highest contiguous seq
                "abababababababababababababababababababababababababababababababab",
                "00000002", // forked: count, then each
                "0000000000000003",
                "0000000000000004",
                "636c696e69636465736b2d636865636b706f696e742d763100", // checkpoint tag
                "01930000000070008000000000000c11",                   // clinic id
                "0000000000000007",                                   // tree size
                "0909090909090909090909090909090909090909090909090909090909090909",
                "000001a0c4506c7b", // issued at ms
            )
        );
    }

    #[test]
    fn login_proof_binds_every_part() {
        let d = Uuid::from_u128(7);
        let base = login_proof_bytes("n1", d, "u");
        assert_ne!(base, login_proof_bytes("n2", d, "u"));
        assert_ne!(base, login_proof_bytes("n1", Uuid::from_u128(8), "u"));
        assert_ne!(base, login_proof_bytes("n1", d, "v"));
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        assert_ne!(
            login_proof_bytes("ab", d, "c"),
            login_proof_bytes("a", d, "bc")
        );
    }

    #[test]
    fn an_escrow_proof_is_not_a_login_proof() {
        assert_ne!(
            escrow_proof_bytes("n", Uuid::nil()),
            login_proof_bytes("n", Uuid::nil(), "")
        );
    }
}
