-- Self-serve onboarding and first passwords.
--
-- A password someone else chose (an admin creating a user, the operator provisioning a
-- clinic's first admin) works once, to choose one's own, and only until it expires.
ALTER TABLE users ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN password_expires_at_ms INTEGER;

-- Login tickets gain a purpose: choosing one's own password before the second factor.
-- Tickets live minutes; the table is rebuilt rather than altered (SQLite cannot change a
-- CHECK), dropping any in flight.
DROP TABLE mfa_tickets;
CREATE TABLE mfa_tickets (
    ticket_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    device_id TEXT NOT NULL REFERENCES devices(id),
    purpose TEXT NOT NULL CHECK (purpose IN ('verify', 'setup', 'password')),
    expires_at_ms INTEGER NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    pending TEXT
);

-- Credentials of the clinic's operator (the hosting organisation's automation) for
-- POST /v1/clinics. Stored as hashes; created and revoked on the server's console.
CREATE TABLE operator_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);

-- One row per idempotency key: a retried provisioning finds its clinic instead of making
-- a second one.
CREATE TABLE provisionings (
    idempotency_key TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    admin_user_id TEXT NOT NULL REFERENCES users(id),
    created_at_ms INTEGER NOT NULL
);
