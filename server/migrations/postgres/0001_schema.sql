-- ClinicDesk server schema, PostgreSQL. The same tables and columns as the SQLite
-- migrations (migrations/sqlite, 0001 to 0007) so that one set of queries serves both:
-- integers are BIGINT, ids and hashes TEXT, Merkle node hashes BYTEA.
--
-- These migrations run as the database owner. The server then does its work as the role
-- `clinicdesk_app` (SET ROLE on every pooled connection), which owns nothing: on the audit
-- tables it may only INSERT and SELECT, and on the clinical tables row-level security
-- shows it only the clinic that the request's scope set (`clinicdesk.clinic_id`).

DO $$
BEGIN
    CREATE ROLE clinicdesk_app NOLOGIN;
EXCEPTION
    -- Roles are cluster-wide: another database of this cluster may have made it already.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

CREATE TABLE clinics (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    idle_timeout_secs BIGINT NOT NULL DEFAULT 900,
    created_at_ms BIGINT NOT NULL,
    max_offline_secs BIGINT NOT NULL DEFAULT 259200
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    username TEXT NOT NULL,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    active BIGINT NOT NULL DEFAULT 1,
    UNIQUE (clinic_id, username)
);

CREATE TABLE enrollment_codes (
    code_hash TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    expires_at_ms BIGINT NOT NULL,
    used_at_ms BIGINT,
    issued_by TEXT REFERENCES users(id)
);

CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    name TEXT NOT NULL,
    public_key TEXT NOT NULL UNIQUE,
    enrolled_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT,
    last_seen_at_ms BIGINT,
    kind TEXT NOT NULL DEFAULT 'workstation' CHECK (kind IN ('workstation', 'server')),
    enrolled_by TEXT REFERENCES users(id),
    app_version TEXT
);
CREATE UNIQUE INDEX one_server_chain_per_clinic ON devices (clinic_id) WHERE kind = 'server';

CREATE TABLE login_nonces (
    nonce TEXT PRIMARY KEY,
    device_id TEXT NOT NULL REFERENCES devices(id),
    expires_at_ms BIGINT NOT NULL
);

-- `seq` orders sessions opened in the same millisecond (SQLite uses its rowid).
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    device_id TEXT NOT NULL REFERENCES devices(id),
    created_at_ms BIGINT NOT NULL,
    last_seen_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT,
    seq BIGINT GENERATED ALWAYS AS IDENTITY
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
    starts_at_ms BIGINT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX appointments_by_day ON appointments (clinic_id, starts_at_ms);

CREATE TABLE audit_events (
    id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    device_id TEXT NOT NULL REFERENCES devices(id),
    device_seq BIGINT NOT NULL,
    actor_user_id TEXT NOT NULL,
    patient_id TEXT,
    action TEXT NOT NULL,
    occurred_at_ms BIGINT NOT NULL,
    event_json TEXT NOT NULL,
    hash TEXT NOT NULL,
    signature TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    UNIQUE (device_id, device_seq)
);
CREATE INDEX audit_by_patient ON audit_events (clinic_id, patient_id, occurred_at_ms);
CREATE INDEX audit_by_actor ON audit_events (clinic_id, actor_user_id, occurred_at_ms);
CREATE INDEX audit_by_time ON audit_events (clinic_id, occurred_at_ms);
CREATE INDEX audit_by_device ON audit_events (clinic_id, device_id, device_seq);

CREATE TABLE audit_leaves (
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    leaf_index BIGINT NOT NULL,
    event_id TEXT NOT NULL UNIQUE REFERENCES audit_events(id),
    PRIMARY KEY (clinic_id, leaf_index)
);

CREATE TABLE audit_nodes (
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    level BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    PRIMARY KEY (clinic_id, level, idx)
);

CREATE TABLE audit_checkpoints (
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    tree_size BIGINT NOT NULL,
    root_hash TEXT NOT NULL,
    issued_at_ms BIGINT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (clinic_id, tree_size)
);

CREATE TABLE audit_alerts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    device_id TEXT NOT NULL REFERENCES devices(id),
    device_seq BIGINT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('fork', 'chain_break')),
    hash TEXT NOT NULL,
    event_json TEXT NOT NULL,
    signature TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    UNIQUE (device_id, device_seq, hash)
);

CREATE TABLE audit_device_heads (
    device_id TEXT PRIMARY KEY REFERENCES devices(id),
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    contiguous_seq BIGINT NOT NULL,
    contiguous_hash TEXT NOT NULL,
    max_seq BIGINT NOT NULL
);

CREATE TABLE mfa_totp (
    user_id TEXT PRIMARY KEY REFERENCES users(id),
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    secret_sealed TEXT NOT NULL,
    last_step BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE mfa_webauthn (
    credential_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    passkey_json TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX mfa_webauthn_by_user ON mfa_webauthn (user_id);

CREATE TABLE mfa_recovery_codes (
    code_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    used_at_ms BIGINT
);
CREATE INDEX mfa_recovery_by_user ON mfa_recovery_codes (user_id);

CREATE TABLE mfa_tickets (
    ticket_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    device_id TEXT NOT NULL REFERENCES devices(id),
    purpose TEXT NOT NULL CHECK (purpose IN ('verify', 'setup')),
    expires_at_ms BIGINT NOT NULL,
    failures BIGINT NOT NULL DEFAULT 0,
    pending TEXT
);

CREATE TABLE mfa_grants (
    grant_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    device_id TEXT NOT NULL REFERENCES devices(id),
    expires_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT
);
CREATE INDEX mfa_grants_by_user ON mfa_grants (user_id);

CREATE TABLE auth_failures (
    key TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    window_start_ms BIGINT NOT NULL,
    locked_until_ms BIGINT
);

-- The application role: read and write working tables, only append to the audit trail.
GRANT USAGE ON SCHEMA public TO clinicdesk_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    clinics, users, enrollment_codes, devices, login_nonces, sessions, patients,
    appointments, audit_device_heads, mfa_totp, mfa_webauthn, mfa_recovery_codes,
    mfa_tickets, mfa_grants, auth_failures
    TO clinicdesk_app;
GRANT SELECT, INSERT ON
    audit_events, audit_leaves, audit_nodes, audit_checkpoints, audit_alerts
    TO clinicdesk_app;

-- The second wall around clinical rows: whatever a query forgets to filter, the role sees
-- only the clinic its transaction named. No clinic named, no rows.
ALTER TABLE patients ENABLE ROW LEVEL SECURITY;
ALTER TABLE appointments ENABLE ROW LEVEL SECURITY;
CREATE POLICY clinic_rows ON patients TO clinicdesk_app
    USING (clinic_id = current_setting('clinicdesk.clinic_id', true))
    WITH CHECK (clinic_id = current_setting('clinicdesk.clinic_id', true));
CREATE POLICY clinic_rows ON appointments TO clinicdesk_app
    USING (clinic_id = current_setting('clinicdesk.clinic_id', true))
    WITH CHECK (clinic_id = current_setting('clinicdesk.clinic_id', true));
