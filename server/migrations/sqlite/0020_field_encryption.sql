-- Sensitive fields (a patient's SSN) are encrypted by the server before they reach the
-- database. Each clinic has data keys (which seal values) and an index key (which makes
-- blind indexes), each stored only wrapped by a key-encryption key version kept outside the
-- database. `key_id` grows with each re-encryption; new values are sealed under the
-- clinic's highest data key.
CREATE TABLE clinic_keys (
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    purpose TEXT NOT NULL CHECK (purpose IN ('data', 'index')),
    key_id INTEGER NOT NULL,
    kek_version INTEGER NOT NULL,
    wrapped TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    -- The key rotation that made this key, if one did (a resumed rotation finds it).
    rotation_id INTEGER,
    PRIMARY KEY (clinic_id, purpose, key_id)
);

-- One sealed value. A record's stored content names it (`sealed:<id>`) in place of the
-- plaintext, so its history stays immutable and hash-checked while a re-encryption
-- rewrites only these rows. Never deleted: old versions of a record still name them.
CREATE TABLE sealed_values (
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    id TEXT NOT NULL,
    field TEXT NOT NULL,
    key_id INTEGER NOT NULL,
    sealed TEXT NOT NULL,
    PRIMARY KEY (clinic_id, id)
);
CREATE INDEX sealed_values_by_key ON sealed_values (clinic_id, key_id);
CREATE TRIGGER sealed_values_no_delete BEFORE DELETE ON sealed_values
BEGIN SELECT RAISE(ABORT, 'sealed_values are never deleted'); END;

-- Exact-match search on the SSN, or its last four digits: keyed blind indexes ('' = none).
ALTER TABLE patients ADD COLUMN ssn_index TEXT NOT NULL DEFAULT '';
ALTER TABLE patients ADD COLUMN ssn_last4_index TEXT NOT NULL DEFAULT '';
CREATE INDEX patients_by_ssn ON patients (clinic_id, ssn_index);
CREATE INDEX patients_by_ssn_last4 ON patients (clinic_id, ssn_last4_index);

-- `keys rotate`: one row per run, finished or not, so a run killed half-way is resumed.
CREATE TABLE key_rotations (
    id INTEGER PRIMARY KEY,
    kek_version INTEGER NOT NULL,
    reencrypt INTEGER NOT NULL,
    started_at_ms INTEGER NOT NULL,
    finished_at_ms INTEGER
);
