-- The practitioners of the system a clinic moved from (see the SQLite migration of the same
-- name): a directory an admin links to clinicians' accounts, never deleted.
CREATE TABLE practitioner_directory (
    id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    source_key TEXT NOT NULL,
    record TEXT NOT NULL,
    version BIGINT NOT NULL,
    user_id TEXT REFERENCES users(id),
    UNIQUE (clinic_id, source_key)
);
CREATE UNIQUE INDEX practitioner_directory_by_user ON practitioner_directory (clinic_id, user_id)
    WHERE user_id IS NOT NULL;
GRANT SELECT, INSERT, UPDATE ON practitioner_directory TO clinicdesk_app;
ALTER TABLE practitioner_directory ENABLE ROW LEVEL SECURITY;
CREATE POLICY clinic_rows ON practitioner_directory TO clinicdesk_app
    USING (clinic_id = current_setting('clinicdesk.clinic_id', true))
    WITH CHECK (clinic_id = current_setting('clinicdesk.clinic_id', true));
