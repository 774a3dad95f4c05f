-- The id a workstation gave a change (the `Idempotency-Key` of its request): a change sent
-- again after its answer was lost (the network went away, the server was killed) finds the
-- version it stored and is answered with it, instead of being applied twice or refused as
-- stale. Unique per clinic; null for changes made without one (imports, the console).
ALTER TABLE record_versions ADD COLUMN change_id TEXT;
CREATE UNIQUE INDEX record_versions_by_change
    ON record_versions (clinic_id, change_id) WHERE change_id IS NOT NULL;
