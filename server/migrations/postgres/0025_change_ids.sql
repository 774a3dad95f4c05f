-- The id a workstation gave a change (see the SQLite migration of the same name).
ALTER TABLE record_versions ADD COLUMN change_id TEXT;
CREATE UNIQUE INDEX record_versions_by_change
    ON record_versions (clinic_id, change_id) WHERE change_id IS NOT NULL;
