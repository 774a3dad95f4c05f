-- Self-serve onboarding and first passwords (see the SQLite migration of the same name).
ALTER TABLE users ADD COLUMN must_change_password BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN password_expires_at_ms BIGINT;

ALTER TABLE mfa_tickets DROP CONSTRAINT mfa_tickets_purpose_check;
ALTER TABLE mfa_tickets ADD CONSTRAINT mfa_tickets_purpose_check
    CHECK (purpose IN ('verify', 'setup', 'password'));

CREATE TABLE operator_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT
);

CREATE TABLE provisionings (
    idempotency_key TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    admin_user_id TEXT NOT NULL REFERENCES users(id),
    created_at_ms BIGINT NOT NULL
);

GRANT SELECT, INSERT, UPDATE ON operator_tokens, provisionings TO clinicdesk_app;
