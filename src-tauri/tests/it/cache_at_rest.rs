//! The encrypted cache on disk: canary strings put into it never appear in the database,
//! its -wal or its -shm file, and a wrong key opens nothing.

use std::path::{Path, PathBuf};

use clinicdesk_app::cache::{self, Cache, CacheError};
use clinicdesk_app::device::DeviceKey;
use clinicdesk_app::keychain::{Keychain, random_key};
use clinicdesk_app::outbox::{self, Draft, Signer};
use clinicdesk_protocol::Phi;
use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::{ClinicalSummary, Patient, UserInfo};
use uuid::Uuid;

const CANARIES: [&str; 4] = [
    "CANARY-Zyxwvut-Name",
    "CANARY-1901-02-03",
    "CANARY-555-0199",
    "CANARY-Penicillin-Allergy",
];

fn canary_patient() -> Patient {
    Patient {
        id: Uuid::now_v7(),
        name: Phi::new(CANARIES[0].into()),
        birth_date: Phi::new(CANARIES[1].into()),
        phone: Phi::new(CANARIES[2].into()),
        clinical: Some(ClinicalSummary {
            allergies: Phi::new(vec![CANARIES[3].into()]),
            problems: Phi::new(vec![]),
            medications: Phi::new(vec![]),
        }),
    }
}

fn files(db: &Path) -> Vec<PathBuf> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| PathBuf::from(format!("{}{suffix}", db.display())))
        .collect()
}

fn assert_no_canary(db: &Path) {
    let mut checked = 0;
    for file in files(db) {
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        checked += 1;
        for canary in CANARIES {
            assert!(
                !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
                "{canary} in plaintext in {}",
                file.display()
            );
        }
    }
    assert!(checked >= 1, "no cache file was written");
}

fn test_user(role: Role) -> UserInfo {
    UserInfo {
        user_id: Uuid::now_v7(),
        username: "test-user".into(),
        display_name: "Test".into(),
        role,
        clinic_id: Uuid::now_v7(),
    }
}

/// Appends one event in its own transaction, with `write` committing alongside it.
fn append(
    cache: &mut Cache,
    signer: &Signer<'_>,
    draft: Draft,
    write: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<(), CacheError>,
) {
    cache
        .transaction(|tx| {
            outbox::append(tx, signer, draft, 1)?;
            write(tx)
        })
        .unwrap();
}

/// A keychain entry the test owns, in the harness's real Secret Service.
fn test_keychain() -> Keychain {
    Keychain::new(&format!("ClinicDesk-test-{}", Uuid::new_v4()), "cache-test")
}

#[test]
fn canaries_never_reach_disk_in_plaintext_and_the_wrong_key_fails() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cache.sqlite3");
    let key = random_key().unwrap();
    let device_key = DeviceKey::create(&test_keychain()).unwrap();
    let user = test_user(Role::Clinician);
    let patient = canary_patient();
    {
        let mut cache = Cache::open(&db, &key).unwrap();
        append(
            &mut cache,
            &Signer {
                key: &device_key,
                device_id: Uuid::now_v7(),
                user: &user,
            },
            Draft {
                action: AuditAction::View,
                resource_type: "Patient",
                resource_id: patient.id.to_string(),
                patient_id: Some(patient.id),
                fields: patient.field_names(),
                offline: false,
                route: "patient",
            },
            |tx| cache::put_patient(tx, &patient, 1),
        );
        // While open, the write sits in the WAL: it must be ciphertext there too.
        assert!(files(&db)[1].exists(), "WAL mode keeps a -wal file");
        assert_no_canary(&db);
        // The canaries really are in the cache, readable with the key.
        assert_eq!(
            cache.cached_patient(patient.id).unwrap(),
            Some(patient.clone())
        );
    }
    assert_no_canary(&db);

    let wrong = random_key().unwrap();
    assert!(matches!(
        Cache::open(&db, &wrong),
        Err(CacheError::WrongKey)
    ));

    // Without any key, plain SQLite sees no database at all.
    let plain = rusqlite::Connection::open(&db).unwrap();
    assert!(
        plain
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r
                .get::<_, i64>(0))
            .is_err()
    );

    let reopened = Cache::open(&db, &key).unwrap();
    assert_eq!(reopened.cached_patient(patient.id).unwrap(), Some(patient));
    assert_eq!(outbox::count(reopened.connection()).unwrap(), 1);
}

#[test]
fn the_outbox_chains_and_signs_each_event() {
    let dir = tempfile::tempdir().unwrap();
    let key = random_key().unwrap();
    let device_key = DeviceKey::create(&test_keychain()).unwrap();
    let user = test_user(Role::FrontDesk);
    let device_id = Uuid::now_v7();
    let mut cache = Cache::open(&dir.path().join("c.sqlite3"), &key).unwrap();
    let signer = Signer {
        key: &device_key,
        device_id,
        user: &user,
    };
    for i in 0..3 {
        let draft = Draft {
            action: AuditAction::View,
            resource_type: "Schedule",
            resource_id: format!("day-{i}"),
            patient_id: None,
            fields: vec![],
            offline: false,
            route: "schedule",
        };
        append(&mut cache, &signer, draft, |_| Ok(()));
    }
    let events = outbox::pending(cache.connection(), 10).unwrap();
    assert_eq!(events.len(), 3);
    let public: [u8; 32] = clinicdesk_protocol::audit::from_hex(&device_key.public_key_hex())
        .unwrap()
        .try_into()
        .unwrap();
    let verifier = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
    let mut prev = clinicdesk_protocol::audit::Hash32::GENESIS;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.event.device_seq, i as u64 + 1);
        assert_eq!(e.event.prev_hash, prev);
        let sig: [u8; 64] = clinicdesk_protocol::audit::from_hex(&e.signature)
            .unwrap()
            .try_into()
            .unwrap();
        verifier
            .verify_strict(
                &e.event.canonical_bytes(),
                &ed25519_dalek::Signature::from_bytes(&sig),
            )
            .unwrap();
        prev = e.event.hash();
    }
    // The receipt decides what is forgotten: only the named ids go.
    let removed = outbox::acknowledge(cache.connection(), &[events[0].event.id]).unwrap();
    assert_eq!(removed, 1);
    assert_eq!(outbox::count(cache.connection()).unwrap(), 2);
}
