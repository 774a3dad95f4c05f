-- What each user's offline copy on each workstation holds (see the SQLite migration of the
-- same name): counts only, behind the clinic wall.
CREATE TABLE offline_copies (
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    device_id TEXT NOT NULL REFERENCES devices(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    patients BIGINT NOT NULL,
    days BIGINT NOT NULL,
    reported_at_ms BIGINT NOT NULL,
    PRIMARY KEY (device_id, user_id)
);
CREATE INDEX offline_copies_by_clinic ON offline_copies (clinic_id, device_id);
GRANT SELECT, INSERT, UPDATE, DELETE ON offline_copies TO clinicdesk_app;
ALTER TABLE offline_copies ENABLE ROW LEVEL SECURITY;
CREATE POLICY clinic_rows ON offline_copies TO clinicdesk_app
    USING (clinic_id = current_setting('clinicdesk.clinic_id', true))
    WITH CHECK (clinic_id = current_setting('clinicdesk.clinic_id', true));
