//! The committed test vectors (`docs/test-vectors/audit-v2.json`): events with their canonical
//! encodings, hashes and signatures, and a small signed log with its checkpoint and proofs,
//! from fixed keys. This test rebuilds them and fails if the file differs (an encoding
//! change must be deliberate: set `CLINICDESK_BLESS_VECTORS=1` to rewrite the file), checks
//! them with our verifiers, and runs `docs/test-vectors/verify_vectors.py`, a second
//! implementation written from `docs/audit-format.md` alone (Python standard library).

use std::collections::HashMap;

use clinicdesk_protocol::audit::{
    AuditAction, AuditEvent, BreakGlass, Hash32, Outcome, Recorder, RequestSeen, to_hex,
};
use clinicdesk_protocol::export::{
    ChainKey, ClinicKeys, EXPORT_FORMAT, EventDigest, ExportEnd, ExportFilters, ExportHeader,
    ExportLine, ExportedEvent,
};
use clinicdesk_protocol::merkle::{
    Checkpoint, Frontier, InclusionEvidence, NodeId, SignedCheckpoint, assemble, consistency_plan,
    inclusion_plan, verify_consistency, verify_inclusion,
};
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::rotation::{KeyRotation, ServerKeys};
use clinicdesk_protocol::wire::AuditReceipt;
use clinicdesk_server::audit::key::{PublicKey, verify_hex};
use clinicdesk_server::audit::verify_export::verify_export;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use uuid::Uuid;

const FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docs/test-vectors/audit-v2.json"
);
const BUNDLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docs/test-vectors/export-v1.jsonl"
);
const PY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docs/test-vectors/verify_vectors.py"
);

/// Test-only keys: seeds 0x01.. and 0x02.., published with the vectors. Never used elsewhere.
fn keys() -> (SigningKey, SigningKey) {
    (
        SigningKey::from_bytes(&[1; 32]),
        SigningKey::from_bytes(&[2; 32]),
    )
}

fn events() -> Vec<AuditEvent> {
    let clinic = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0c11);
    let workstation = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0d01);
    let server_chain = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_05e1);
    let clinician = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0a01);
    let patient = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0b01);
    let base = AuditEvent {
        id: Uuid::nil(),
        clinic_id: clinic,
        actor_user_id: clinician,
        actor_role: Role::Clinician,
        recorded_by: Recorder::Device,
        device_id: workstation,
        device_seq: 0,
        action: AuditAction::View,
        resource_type: "Patient".into(),
        resource_id: patient.to_string(),
        patient_id: Some(patient),
        fields: vec!["name".into(), "allergies".into()],
        outcome: Outcome::Success,
        occurred_at_ms: 1_795_435_200_123,
        offline: false,
        route: "patient".into(),
        break_glass: None,
        request: None,
        prev_hash: Hash32::GENESIS,
        change: None,
    };
    let mut out: Vec<AuditEvent> = Vec::new();
    let mut push = |mut e: AuditEvent, n: u128| {
        e.id = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_e000 + n);
        e.device_seq = out.iter().filter(|p| p.device_id == e.device_id).count() as u64 + 1;
        e.prev_hash = out
            .iter()
            .rev()
            .find(|p| p.device_id == e.device_id)
            .map_or(Hash32::GENESIS, AuditEvent::hash);
        out.push(e);
    };
    push(base.clone(), 1);
    let mut offline = base.clone();
    offline.offline = true;
    offline.occurred_at_ms += 60_000;
    offline.fields = vec![];
    offline.action = AuditAction::Lock;
    offline.resource_type = "Session".into();
    offline.resource_id = String::new();
    offline.patient_id = None;
    push(offline, 2);
    let mut glass = base.clone();
    glass.action = AuditAction::BreakGlass;
    glass.occurred_at_ms += 120_000;
    glass.break_glass = Some(BreakGlass {
        reason_code: "emergency".into(),
        reason_text: "Unconscious patient in the waiting room; ünïcode kept as UTF-8".into(),
    });
    push(glass, 3);
    let mut served = base.clone();
    served.recorded_by = Recorder::Server;
    served.device_id = server_chain;
    served.route = "/v1/patients/{patient_id}".into();
    served.occurred_at_ms += 180_000;
    served.request = Some(RequestSeen {
        client_ip: "192.0.2.10".into(),
        user_agent: "ClinicDesk/0.1".into(),
        session_device_id: Some(workstation),
    });
    push(served.clone(), 4);
    let mut denied = served;
    denied.outcome = Outcome::Denied;
    denied.patient_id = None;
    denied.fields = vec![];
    denied.resource_id = "/v1/patients/00000000-0000-0000-0000-000000000000".into();
    denied.occurred_at_ms += 1;
    denied.request = Some(RequestSeen {
        client_ip: "2001:db8::1".into(),
        user_agent: String::new(),
        session_device_id: None,
    });
    push(denied, 5);
    out
}

fn hexes(hashes: &[Hash32]) -> Vec<String> {
    hashes.iter().map(Hash32::to_hex).collect()
}

/// The vectors file and the export bundle built from the same events and log.
fn build() -> (Value, String) {
    let (device_key, server_key) = keys();
    let events = events();
    let mut tree = Frontier::default();
    let mut nodes: HashMap<NodeId, Hash32> = HashMap::new();
    let mut roots = Vec::new();
    let mut vectors = Vec::new();
    for e in &events {
        let key = match e.recorded_by {
            Recorder::Device => &device_key,
            Recorder::Server => &server_key,
        };
        let bytes = e.canonical_bytes();
        vectors.push(json!({
            "event": e,
            "canonical_hex": to_hex(&bytes),
            "hash": e.hash().to_hex(),
            "signature": to_hex(&key.sign(&bytes).to_bytes()),
        }));
        nodes.extend(tree.push(&e.hash()));
        roots.push(tree.root());
    }
    let size = tree.size();
    let checkpoint = Checkpoint {
        clinic_id: events[0].clinic_id,
        tree_size: size,
        root_hash: tree.root(),
        issued_at_ms: 1_795_435_500_000,
    };
    let cp_bytes = checkpoint.canonical_bytes();
    let node = |id| nodes.get(&id).copied();
    let inclusion: Vec<Value> = (0..size)
        .map(|i| {
            let proof = assemble(&inclusion_plan(size, i).unwrap(), node).unwrap();
            verify_inclusion(
                &checkpoint.root_hash,
                size,
                i,
                &events[i as usize].hash(),
                &proof,
            )
            .unwrap();
            json!({ "leaf_index": i, "tree_size": size, "hashes": hexes(&proof) })
        })
        .collect();
    let signed = SignedCheckpoint {
        checkpoint: checkpoint.clone(),
        signature: to_hex(&server_key.sign(&cp_bytes).to_bytes()),
    };
    let keys = clinic_keys(&events, &device_key, &server_key);
    let receipt = receipt(&events, &server_key, &signed, &nodes);
    let bundle = bundle(&events, (&device_key, &server_key), &signed, &keys, &nodes);
    let consistency: Vec<Value> = (1..size)
        .map(|old| {
            let proof = assemble(&consistency_plan(old, size).unwrap(), node).unwrap();
            verify_consistency(
                old,
                &roots[old as usize - 1],
                size,
                &checkpoint.root_hash,
                &proof,
            )
            .unwrap();
            json!({
                "old_size": old,
                "old_root": roots[old as usize - 1].to_hex(),
                "new_size": size,
                "hashes": hexes(&proof),
            })
        })
        .collect();
    let vectors = json!({
        "about": "ClinicDesk audit test vectors, encoding v2 (docs/audit-format.md). The keys are \
                  published test keys: never trust them for anything else.",
        "device_public_key": to_hex(device_key.verifying_key().as_bytes()),
        "device_private_seed": to_hex(&[1; 32]),
        "server_public_key": to_hex(server_key.verifying_key().as_bytes()),
        "server_private_seed": to_hex(&[2; 32]),
        "events": vectors,
        "log": {
            "roots_by_size": hexes(&roots),
            "checkpoint": {
                "checkpoint": checkpoint,
                "canonical_hex": to_hex(&cp_bytes),
                "signature": to_hex(&server_key.sign(&cp_bytes).to_bytes()),
            },
            "inclusion": inclusion,
            "consistency": consistency,
        },
        "receipt": {
            "receipt": receipt,
            "canonical_hex": to_hex(&receipt.canonical_bytes()),
        },
        "keys": keys,
        "rotation": rotation(&server_key),
        "export_bundle": {
            "file": "export-v1.jsonl",
            "end_signed_hex": to_hex(&end_signed_bytes(&bundle)),
        },
    });
    (vectors, bundle)
}

/// The vectors' server key handing over to a successor (published seed 0x03..), with the
/// bytes it signs.
fn rotation(server: &SigningKey) -> Value {
    let successor = SigningKey::from_bytes(&[3; 32]);
    let key = |k: &SigningKey| PublicKey::from_hex(&to_hex(k.verifying_key().as_bytes())).unwrap();
    let (old, new) = (key(server), key(&successor));
    let at_ms = 1_795_521_600_000;
    let bytes = KeyRotation::signed_bytes(&old, &new, at_ms);
    let record = KeyRotation {
        old_key: old.to_hex(),
        new_key: new.to_hex(),
        at_ms,
        signature: to_hex(&server.sign(&bytes).to_bytes()),
    };
    ServerKeys::from_rotations(new, std::slice::from_ref(&record)).unwrap();
    json!({
        "successor_private_seed": to_hex(&[3; 32]),
        "record": record,
        "signed_hex": to_hex(&bytes),
    })
}

/// What `audit keys` prints for the vectors' clinic.
fn clinic_keys(events: &[AuditEvent], device: &SigningKey, server: &SigningKey) -> ClinicKeys {
    let chains = events
        .iter()
        .map(|e| {
            let key = match e.recorded_by {
                Recorder::Device => device,
                Recorder::Server => server,
            };
            let chain = ChainKey {
                recorded_by: e.recorded_by,
                public_key: to_hex(key.verifying_key().as_bytes()),
            };
            (e.device_id, chain)
        })
        .collect();
    ClinicKeys {
        clinic_id: events[0].clinic_id,
        server: to_hex(server.verifying_key().as_bytes()),
        chains,
        rotations: Vec::new(),
    }
}

fn proof_of(nodes: &HashMap<NodeId, Hash32>, size: u64, leaf: u64) -> Vec<Hash32> {
    assemble(&inclusion_plan(size, leaf).unwrap(), |id| {
        nodes.get(&id).copied()
    })
    .unwrap()
}

/// The workstation's receipt after uploading its three events, with a fork at sequence 4
/// (a different event the server already held there, in this made-up case).
fn receipt(
    events: &[AuditEvent],
    server: &SigningKey,
    checkpoint: &SignedCheckpoint,
    nodes: &HashMap<NodeId, Hash32>,
) -> AuditReceipt {
    let (leaf, last) = events
        .iter()
        .enumerate()
        .rfind(|(_, e)| e.recorded_by == Recorder::Device)
        .unwrap();
    let size = checkpoint.checkpoint.tree_size;
    let leaf = u64::try_from(leaf).unwrap();
    let mut receipt = AuditReceipt {
        device_id: last.device_id,
        highest_contiguous_seq: last.device_seq,
        contiguous_hash: last.hash(),
        forked: vec![4],
        checkpoint: checkpoint.clone(),
        inclusion: Some(InclusionEvidence {
            leaf_index: leaf,
            tree_size: size,
            hashes: proof_of(nodes, size, leaf),
        }),
        signature: String::new(),
        device_revoked: false,
        rotations: Vec::new(),
    };
    receipt.signature = to_hex(&server.sign(&receipt.canonical_bytes()).to_bytes());
    receipt
}

/// The unfiltered export of the vectors' log: header, every event newest first with its
/// proof, and the signed end line.
fn bundle(
    events: &[AuditEvent],
    (device, server): (&SigningKey, &SigningKey),
    checkpoint: &SignedCheckpoint,
    keys: &ClinicKeys,
    nodes: &HashMap<NodeId, Hash32>,
) -> String {
    let line = |l: &ExportLine| serde_json::to_string(l).unwrap();
    let header = line(&ExportLine::Header(ExportHeader {
        format: EXPORT_FORMAT.to_owned(),
        clinic_id: checkpoint.checkpoint.clinic_id,
        exported_at_ms: 1_795_435_600_000,
        filters: ExportFilters::default(),
        checkpoint: checkpoint.clone(),
        keys: keys.clone(),
    }));
    let size = checkpoint.checkpoint.tree_size;
    let mut newest_first: Vec<(u64, &AuditEvent)> = (0..).zip(events).collect();
    newest_first.sort_by(|(_, a), (_, b)| {
        (b.occurred_at_ms, b.id.to_string()).cmp(&(a.occurred_at_ms, a.id.to_string()))
    });
    let mut out = header.clone() + "\n";
    let mut digest = EventDigest::default();
    for (leaf, e) in &newest_first {
        let key = match e.recorded_by {
            Recorder::Device => device,
            Recorder::Server => server,
        };
        digest.push(&e.hash());
        out += &line(&ExportLine::Event(ExportedEvent {
            event: (*e).clone(),
            signature: to_hex(&key.sign(&e.canonical_bytes()).to_bytes()),
            leaf_index: *leaf,
            inclusion: proof_of(nodes, size, *leaf),
        }));
        out += "\n";
    }
    let n = u64::try_from(newest_first.len()).unwrap();
    let digest = digest.finish();
    let signature = to_hex(
        &server
            .sign(&ExportEnd::signed_bytes(header.as_bytes(), n, &digest))
            .to_bytes(),
    );
    out += &line(&ExportLine::End(ExportEnd {
        events: n,
        digest,
        signature,
    }));
    out + "\n"
}

/// The bytes the bundle's end line signs, rebuilt from the bundle's own lines.
fn end_signed_bytes(bundle: &str) -> Vec<u8> {
    let lines: Vec<&str> = bundle.lines().collect();
    let Ok(ExportLine::End(end)) = serde_json::from_str(lines[lines.len() - 1]) else {
        panic!("the last line is the end line");
    };
    ExportEnd::signed_bytes(lines[0].as_bytes(), end.events, &end.digest)
}

#[test]
fn committed_vectors_match_the_code_and_a_second_implementation() {
    let (vectors, bundle) = build();
    let built = serde_json::to_string_pretty(&vectors).unwrap() + "\n";
    if std::env::var_os("CLINICDESK_BLESS_VECTORS").is_some() {
        std::fs::write(FILE, &built).unwrap();
        std::fs::write(BUNDLE, &bundle).unwrap();
    }
    let committed = std::fs::read_to_string(FILE).unwrap();
    assert!(
        committed == built,
        "docs/test-vectors/audit-v2.json differs from what the code produces; if the encoding \
         change is deliberate, rerun with CLINICDESK_BLESS_VECTORS=1 and bump the version"
    );
    let committed_bundle = std::fs::read_to_string(BUNDLE).unwrap();
    assert!(
        committed_bundle == bundle,
        "docs/test-vectors/export-v1.jsonl differs from what the code produces (bless as above)"
    );

    // Our verifiers accept them: the receipt as the app checks it, the bundle as
    // `audit verify-export --keys` does, with the keys `audit keys` would print.
    let receipt: AuditReceipt =
        serde_json::from_value(vectors["receipt"]["receipt"].clone()).unwrap();
    let server_key = PublicKey::from_hex(vectors["server_public_key"].as_str().unwrap()).unwrap();
    assert!(verify_hex(
        &server_key,
        &receipt.canonical_bytes(),
        &receipt.signature
    ));
    receipt.check_inclusion().unwrap();
    let keys: ClinicKeys = serde_json::from_value(vectors["keys"].clone()).unwrap();
    let summary = verify_export(bundle.as_bytes(), Some(&keys)).unwrap();
    assert_eq!((summary.events, summary.tree_size), (5, 5));
    // One event line fewer, and the bundle is no longer whole.
    let mut lines: Vec<&str> = bundle.lines().collect();
    lines.remove(2);
    let short = lines.join("\n") + "\n";
    assert!(verify_export(short.as_bytes(), Some(&keys)).is_err());

    let out = std::process::Command::new("python3")
        .arg(PY)
        .arg(FILE)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("5 events, 5 inclusion proofs, 4 consistency proofs: all match"),
        "{stdout}"
    );
    assert!(
        stdout.contains("receipt: matches")
            && stdout.contains("rotation: matches")
            && stdout.contains("export bundle: 5 events, whole"),
        "{stdout}"
    );
}
