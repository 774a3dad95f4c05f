//! A receipt as the app parses it before its outbox forgets anything: any bytes either fail
//! to parse or give a receipt whose signed bytes, digest and inclusion proof are checked
//! without a panic; a receipt whose proof checks out names a leaf inside its checkpoint.

#![no_main]

use clinicdesk_protocol::wire::AuditReceipt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(receipt) = serde_json::from_slice::<AuditReceipt>(data) else {
        return;
    };
    let _ = receipt.canonical_bytes();
    let _ = receipt.digest();
    let _ = receipt.checkpoint.checkpoint.canonical_bytes();
    if receipt.check_inclusion().is_ok()
        && let Some(proof) = &receipt.inclusion
    {
        assert!(proof.leaf_index < receipt.checkpoint.checkpoint.tree_size);
    }
    let held = receipt.held();
    assert_eq!(held.canonical_bytes(), receipt.canonical_bytes());
});
