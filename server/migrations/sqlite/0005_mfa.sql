-- Second factors. A password login yields only a ticket; a session needs a factor below.

-- TOTP: the secret sealed under DATA_DIR/mfa-seal.key; last_step stops code replay.
CREATE TABLE mfa_totp (
    user_id TEXT PRIMARY KEY REFERENCES users(id),
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    secret_sealed TEXT NOT NULL,
    last_step INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL
);

-- WebAuthn credentials (webauthn-rs `Passkey`, JSON; public key and counter, no secret).
CREATE TABLE mfa_webauthn (
    credential_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    passkey_json TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX mfa_webauthn_by_user ON mfa_webauthn (user_id);

-- Single-use recovery codes, stored as SHA-256 hashes (60 random bits each).
CREATE TABLE mfa_recovery_codes (
    code_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    used_at_ms INTEGER
);
CREATE INDEX mfa_recovery_by_user ON mfa_recovery_codes (user_id);

-- The second step of a login: one user on one device, minutes long, burned after a few
-- wrong codes. `pending` holds a ceremony's state (a sealed TOTP secret being set up, or a
-- WebAuthn challenge) so that any server instance can finish what another began.
CREATE TABLE mfa_tickets (
    ticket_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    device_id TEXT NOT NULL REFERENCES devices(id),
    purpose TEXT NOT NULL CHECK (purpose IN ('verify', 'setup')),
    expires_at_ms INTEGER NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    pending TEXT
);

-- After a second factor: this user on this device may sign in with password and device key
-- alone until the grant expires (12 hours) or is revoked (MFA reset, deactivation).
CREATE TABLE mfa_grants (
    grant_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    device_id TEXT NOT NULL REFERENCES devices(id),
    expires_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);
CREATE INDEX mfa_grants_by_user ON mfa_grants (user_id);
