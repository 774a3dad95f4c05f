//! An audit upload as the server's route decodes it (`POST /v1/audit/batches`): any bytes
//! either fail to parse or give events whose canonical encoding and hash are computed
//! without a panic, and survive a JSON round trip unchanged (the canonical bytes, which the
//! device signed, are what the server stores and verifies).

#![no_main]

use clinicdesk_protocol::audit::SignedAuditEvent;
use clinicdesk_protocol::wire::AuditUpload;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(upload) = serde_json::from_slice::<AuditUpload>(data) else {
        return;
    };
    for signed in &upload.events {
        let bytes = signed.event.canonical_bytes();
        let hash = signed.event.hash();
        let json = serde_json::to_vec(signed).expect("a parsed event serializes");
        let again: SignedAuditEvent = serde_json::from_slice(&json).expect("and parses back");
        assert_eq!(
            again.event.canonical_bytes(),
            bytes,
            "canonical bytes survive JSON"
        );
        assert_eq!(again.event.hash(), hash);
        assert_eq!(again.signature, signed.signature);
    }
    if let Some(held) = &upload.held_receipt {
        let _ = held.canonical_bytes();
        let _ = held.check_inclusion();
    }
});
