-- Import jobs an admin started through the API: how far each is, and its report (source
-- resource ids and reasons, never a value). Any instance answers a job's progress.
CREATE TABLE import_jobs (
    id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    started_by TEXT NOT NULL REFERENCES users(id),
    status TEXT NOT NULL,
    total INTEGER NOT NULL,
    done INTEGER NOT NULL,
    report TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    -- When it last stored progress: a running job silent for long lost its instance.
    updated_at_ms INTEGER NOT NULL,
    finished_at_ms INTEGER
);
CREATE INDEX import_jobs_by_clinic ON import_jobs (clinic_id, started_at_ms);
