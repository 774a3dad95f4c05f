//! The encrypted files on disk: canary strings put into a user's cache never appear in
//! the database, its -wal or its -shm file; a wrong key opens nothing; one user's
//! password does not open another's cache; the outbox is encrypted and chained.

use std::path::{Path, PathBuf};

use clinicdesk_app::local::cache::{self, Cache};
use clinicdesk_app::local::db::DbError;
use clinicdesk_app::local::outbox::{Draft, Outbox, Signer};
use clinicdesk_app::local::patient_search::{MAX_HITS, PatientQuery};
use clinicdesk_app::local::users::UserCaches;
use clinicdesk_app::secrets::device_key::DeviceKey;
use clinicdesk_app::secrets::keychain::{Keychain, random_key};
use clinicdesk_app::secrets::keys::DeviceSecret;
use clinicdesk_protocol::Phi;
use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::{ClinicalAccess, ClinicalSummary, Patient, UserInfo};
use uuid::Uuid;

const CANARIES: [&str; 8] = [
    "CANARY-Zyxwvut-Name",
    "CANARY-1901-02-03",
    "CANARY-555-0199",
    "CANARY-Penicillin-Allergy",
    "CANARY-MRN-7731",
    // The search keys derived from them: the name's words lowercased, the MRN normalised.
    "canary-zyxwvut-name",
    "canary-1901-02-03",
    "CANARYMRN7731",
];

fn canary_patient() -> Patient {
    Patient {
        id: Uuid::now_v7(),
        name: Phi::new(CANARIES[0].into()),
        birth_date: Phi::new(CANARIES[1].into()),
        mrn: Phi::new(CANARIES[4].into()),
        phone: Phi::new(CANARIES[2].into()),
        clinical: Some(ClinicalSummary {
            allergies: Phi::new(vec![CANARIES[3].into()]),
            problems: Phi::new(vec![]),
            medications: Phi::new(vec![]),
        }),
        clinical_access: ClinicalAccess::CareTeam,
        break_glass: None,
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

/// A keychain the test owns, in the harness's real Secret Service.
fn test_keychain() -> Keychain {
    Keychain::new(&format!("ClinicDesk-test-{}", Uuid::new_v4()), "cache-test")
}

fn view_draft(patient: &Patient) -> Draft {
    Draft {
        action: AuditAction::View,
        resource_type: "Patient",
        resource_id: patient.id.to_string(),
        patient_id: Some(patient.id),
        fields: patient.field_names(),
        offline: false,
        route: "patient",
        break_glass: None,
    }
}

#[test]
fn canaries_never_reach_disk_in_plaintext_and_the_wrong_key_fails() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cache.sqlite3");
    let key = random_key().unwrap();
    let patient = canary_patient();
    {
        let mut cache = Cache::open(&db, &key).unwrap();
        cache
            .transaction(|tx| cache::put_patient(tx, &patient, 1))
            .unwrap();
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
    assert!(matches!(Cache::open(&db, &wrong), Err(DbError::WrongKey)));

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
}

#[test]
fn the_outbox_chains_and_signs_each_event_and_is_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.sqlite3");
    let key = random_key().unwrap();
    let secret = clinicdesk_app::secrets::keys::DeviceSecret::from_bytes(random_key().unwrap());
    let paths = clinicdesk_app::config::Paths::under(dir.path());
    let device_key = DeviceKey::create(&paths, &secret).unwrap();
    let user = test_user(Role::FrontDesk);
    let device_id = Uuid::now_v7();
    let mut outbox = Outbox::open(&path, &key).unwrap();
    let signer = Signer {
        key: &device_key,
        device_id,
        user: &user,
    };
    let patient = canary_patient();
    for _ in 0..3 {
        outbox.append(&signer, view_draft(&patient), 1).unwrap();
    }
    assert_no_canary_in(&path, &[&patient.id.to_string(), "test-user"]);
    let events = outbox.pending(10).unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(outbox.last_seq().unwrap(), 3);
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
    // A receipt naming a different event at a sequence this outbox holds forgets nothing;
    // the right one forgets exactly the events up to that sequence.
    assert_eq!(
        outbox
            .acknowledge_through(2, &events[0].event.hash())
            .unwrap(),
        None
    );
    assert_eq!(outbox.count().unwrap(), 3);
    let removed = outbox
        .acknowledge_through(2, &events[1].event.hash())
        .unwrap();
    assert_eq!(removed, Some(2));
    assert_eq!(outbox.count().unwrap(), 1);
    drop(outbox);
    assert!(matches!(
        Outbox::open(&path, &random_key().unwrap()),
        Err(DbError::WrongKey)
    ));
}

fn assert_no_canary_in(db: &Path, needles: &[&str]) {
    for file in files(db) {
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        for needle in needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "plaintext in {}",
                file.display()
            );
        }
    }
}

#[test]
fn each_users_cache_opens_only_with_their_password_and_this_devices_secret() {
    let dir = tempfile::tempdir().unwrap();
    let keychain = test_keychain();
    let secret = DeviceSecret::create(&keychain).unwrap();
    let caches = UserCaches::under(dir.path());
    let alice = test_user(Role::Clinician);
    let bob = UserInfo {
        user_id: Uuid::now_v7(),
        username: "bob".into(),
        ..test_user(Role::FrontDesk)
    };
    let patient = canary_patient();
    {
        let mut a = caches.create(&secret, &alice, "alice-password-1").unwrap();
        a.transaction(|tx| cache::put_patient(tx, &patient, 1))
            .unwrap();
        caches.create(&secret, &bob, "bob-password-22").unwrap();
    }
    assert_no_canary(&caches.cache_path(alice.user_id));

    let alice_key = caches.find(&secret, " TEST-USER ").unwrap().unwrap();
    assert_eq!(alice_key.user_id, alice.user_id);
    let bob_key = caches.load(bob.user_id).unwrap().unwrap();
    assert!(caches.find(&secret, "carol").unwrap().is_none());

    // Alice's password does not open Bob's cache, nor the reverse.
    assert!(
        caches
            .open(&secret, &bob_key, "alice-password-1")
            .unwrap()
            .is_none()
    );
    assert!(
        caches
            .open(&secret, &alice_key, "bob-password-22")
            .unwrap()
            .is_none()
    );
    // Bob cannot just open Alice's database file with his own cache key either.
    let a = caches
        .open(&secret, &alice_key, "alice-password-1")
        .unwrap()
        .expect("alice's password opens alice's cache");
    assert_eq!(a.cached_patient(patient.id).unwrap(), Some(patient));
    drop(a);

    // The right password on another device (another device secret) opens nothing.
    let other_device = DeviceSecret::create(&test_keychain()).unwrap();
    assert!(
        caches
            .open(&other_device, &alice_key, "alice-password-1")
            .unwrap()
            .is_none()
    );
    // Usernames are not written to disk; lookups use a keyed tag.
    let key_file = std::fs::read_to_string(
        caches
            .dir()
            .join(alice.user_id.to_string())
            .join("key.json"),
    )
    .unwrap();
    assert!(!key_file.contains("test-user"));

    // Removing a user's cache deletes its files and leaves the other user's.
    caches.remove(alice.user_id).unwrap();
    assert!(!caches.cache_path(alice.user_id).exists());
    assert!(caches.find(&secret, "test-user").unwrap().is_none());
    assert!(caches.cache_path(bob.user_id).exists());
}

/// The names a search of `cache` for `text` lists, in order.
fn names(cache: &Cache, text: &str) -> Vec<String> {
    let query = PatientQuery::parse(text).unwrap();
    cache
        .search_patients(&query)
        .unwrap()
        .into_iter()
        .map(|h| h.name.expose().clone())
        .collect()
}

fn synthetic_patient(i: usize, name: &str, birth_date: &str) -> Patient {
    Patient {
        id: Uuid::now_v7(),
        name: Phi::new(name.into()),
        birth_date: Phi::new(birth_date.into()),
        mrn: Phi::new(format!("MRN-{:06}", 200_000 + i)),
        phone: Phi::new("555-0100".into()),
        clinical: None,
        clinical_access: ClinicalAccess::NotPermitted,
        break_glass: None,
    }
}

#[test]
fn patients_are_found_by_name_words_birth_date_and_mrn_inside_the_encrypted_cache() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cache.sqlite3");
    let mut cache = Cache::open(&db, &random_key().unwrap()).unwrap();
    let mut patients = vec![
        synthetic_patient(1, "Testa Quillfeather", "1961-04-12"),
        synthetic_patient(2, "Quill Brightwater", "1988-09-30"),
        synthetic_patient(3, "Demo Quillon", "1961-04-12"),
    ];
    // More namesakes than one search returns.
    patients.extend(
        (0..30).map(|i| synthetic_patient(10 + i, &format!("Sample Many{i:02}"), "2000-01-01")),
    );
    cache
        .transaction(|tx| {
            for p in &patients {
                cache::put_patient(tx, p, 1)?;
            }
            Ok(())
        })
        .unwrap();
    // Any word of the name, by its start, case aside; results by name.
    assert_eq!(
        names(&cache, "quill"),
        ["demo quillon", "quill brightwater", "testa quillfeather"]
            .map(|n| {
                patients
                    .iter()
                    .find(|p| p.name.expose().to_lowercase() == n)
                    .unwrap()
                    .name
                    .expose()
                    .clone()
            })
            .to_vec()
    );
    assert_eq!(names(&cache, "Quill, Tes"), ["Testa Quillfeather"]);
    assert_eq!(names(&cache, "brightw"), ["Quill Brightwater"]);
    assert!(names(&cache, "quillx").is_empty());
    // Dates of birth, in either way of writing them.
    assert_eq!(
        names(&cache, "1961-04-12"),
        ["Demo Quillon", "Testa Quillfeather"]
    );
    assert_eq!(
        names(&cache, "4/12/1961"),
        ["Demo Quillon", "Testa Quillfeather"]
    );
    // MRNs, as printed, typed loosely, or by their digits.
    assert_eq!(names(&cache, "MRN-200002"), ["Quill Brightwater"]);
    assert_eq!(names(&cache, "mrn 200002"), ["Quill Brightwater"]);
    assert_eq!(names(&cache, "200003"), ["Demo Quillon"]);
    // A common name returns at most a page.
    assert_eq!(names(&cache, "sample").len(), MAX_HITS);
    // A re-fetched chart replaces its keys: the old name no longer finds it.
    let mut renamed = patients[0].clone();
    renamed.name = Phi::new("Testa Newname".into());
    cache
        .transaction(|tx| cache::put_patient(tx, &renamed, 2))
        .unwrap();
    assert_eq!(names(&cache, "quillf"), Vec::<String>::new());
    assert_eq!(names(&cache, "newn"), ["Testa Newname"]);

    // The canary patient's search keys are ciphertext on disk like the rest of it.
    let canary = canary_patient();
    cache
        .transaction(|tx| cache::put_patient(tx, &canary, 3))
        .unwrap();
    assert_eq!(
        cache
            .search_patients(&PatientQuery::parse(CANARIES[4]).unwrap())
            .unwrap()
            .len(),
        1
    );
    drop(cache);
    assert_no_canary(&db);
}
