-- Escrowed device secrets (see the SQLite migration of the same name). The app role may
-- add and delete a row (enrollment, revocation) but never rewrite one.
CREATE TABLE device_escrow (
    device_id TEXT PRIMARY KEY REFERENCES devices(id),
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    sealed_secret TEXT NOT NULL,
    recovery_public_key TEXT NOT NULL UNIQUE
);

GRANT SELECT, INSERT, DELETE ON device_escrow TO clinicdesk_app;
