-- A workstation's device secret, sealed under the server's escrow key (device-escrow.key,
-- not in the database), and the public half of the recovery key that must prove the
-- device before the secret is released. Revoking the device deletes its row: a revoked
-- device's caches can then never be opened again, by anyone.
CREATE TABLE device_escrow (
    device_id TEXT PRIMARY KEY REFERENCES devices(id),
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    sealed_secret TEXT NOT NULL,
    recovery_public_key TEXT NOT NULL UNIQUE
);
