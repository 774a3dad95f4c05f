//! A FHIR R4 `Patient` as the import reads it from a clinic's old system (one NDJSON line;
//! `clinicdesk_protocol::fhir_patient`): any JSON either is skipped with its reason or gives
//! fields that survive an export and a second import unchanged, so a record taken in and
//! sent out again (`GET /v1/fhir/Patient/{id}`, `$everything`) says what was imported.

#![no_main]

use clinicdesk_protocol::fhir_patient::{from_fhir, to_fhir};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(resource) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok((_, fields)) = from_fhir(&resource) else {
        return;
    };
    let exported = to_fhir(uuid_of(data), 1, &fields);
    let (_, again) = from_fhir(&exported).expect("an exported Patient imports again");
    assert!(
        again == fields,
        "a field changed on export and import again"
    );
});

/// Some record id (its value does not matter to the mapping).
fn uuid_of(data: &[u8]) -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    for (b, d) in bytes.iter_mut().zip(data) {
        *b = *d;
    }
    uuid::Uuid::from_bytes(bytes)
}
