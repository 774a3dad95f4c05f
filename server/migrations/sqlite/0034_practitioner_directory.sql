-- The practitioners of the system a clinic moved from, as its import found them: a
-- directory, not sign-ins. An admin links an entry to the clinician's own account (made as
-- any account is, with a first password they must change), and from then on the entry's
-- appointments import onto that clinician's schedule. Records like the others (content,
-- version, history in record_versions with its audit event); never deleted.
CREATE TABLE practitioner_directory (
    id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    -- `Practitioner/<id>` in the source: importing it again changes nothing.
    source_key TEXT NOT NULL,
    record TEXT NOT NULL,
    version INTEGER NOT NULL,
    -- Derived from the content, like patients' columns: the account it is linked to.
    user_id TEXT REFERENCES users(id),
    UNIQUE (clinic_id, source_key)
);
-- One account stands for one entry at most.
CREATE UNIQUE INDEX practitioner_directory_by_user ON practitioner_directory (clinic_id, user_id)
    WHERE user_id IS NOT NULL;
CREATE TRIGGER practitioner_directory_no_delete BEFORE DELETE ON practitioner_directory
BEGIN SELECT RAISE(ABORT, 'directory entries are never deleted'); END;
