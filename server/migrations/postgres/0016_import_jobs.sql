-- Import jobs an admin started through the API (see the SQLite migration of the same name).
CREATE TABLE import_jobs (
    id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    started_by TEXT NOT NULL REFERENCES users(id),
    status TEXT NOT NULL,
    total BIGINT NOT NULL,
    done BIGINT NOT NULL,
    report TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    -- When it last stored progress: a running job silent for long lost its instance.
    updated_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT
);
CREATE INDEX import_jobs_by_clinic ON import_jobs (clinic_id, started_at_ms);
GRANT SELECT, INSERT, UPDATE ON import_jobs TO clinicdesk_app;
ALTER TABLE import_jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY clinic_rows ON import_jobs TO clinicdesk_app
    USING (clinic_id = current_setting('clinicdesk.clinic_id', true))
    WITH CHECK (clinic_id = current_setting('clinicdesk.clinic_id', true));
