-- ClinicDesk server schema, SQLite. Every row of PHI carries a non-null clinic_id.

CREATE TABLE clinics (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    idle_timeout_secs INTEGER NOT NULL DEFAULT 900,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    username TEXT NOT NULL,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    UNIQUE (clinic_id, username)
);

CREATE TABLE enrollment_codes (
    code_hash TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    expires_at_ms INTEGER NOT NULL,
    used_at_ms INTEGER
);

CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    name TEXT NOT NULL,
    public_key TEXT NOT NULL UNIQUE,
    enrolled_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER,
    last_seen_at_ms INTEGER
);

CREATE TABLE login_nonces (
    nonce TEXT PRIMARY KEY,
    device_id TEXT NOT NULL REFERENCES devices(id),
    expires_at_ms INTEGER NOT NULL
);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    device_id TEXT NOT NULL REFERENCES devices(id),
    created_at_ms INTEGER NOT NULL,
    last_seen_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);

CREATE TABLE patients (
    id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    name TEXT NOT NULL,
    birth_date TEXT NOT NULL,
    phone TEXT NOT NULL,
    allergies TEXT NOT NULL,
    problems TEXT NOT NULL,
    medications TEXT NOT NULL
);

CREATE TABLE appointments (
    id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    patient_id TEXT NOT NULL REFERENCES patients(id),
    starts_at_ms INTEGER NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX appointments_by_day ON appointments (clinic_id, starts_at_ms);

CREATE TABLE audit_events (
    id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    device_id TEXT NOT NULL REFERENCES devices(id),
    device_seq INTEGER NOT NULL,
    actor_user_id TEXT NOT NULL,
    patient_id TEXT,
    action TEXT NOT NULL,
    occurred_at_ms INTEGER NOT NULL,
    event_json TEXT NOT NULL,
    hash TEXT NOT NULL,
    signature TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL,
    UNIQUE (device_id, device_seq)
);
CREATE INDEX audit_by_patient ON audit_events (clinic_id, patient_id, occurred_at_ms);
CREATE INDEX audit_by_actor ON audit_events (clinic_id, actor_user_id, occurred_at_ms);

-- Append-only: the application has no path to change or remove an audit event.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
