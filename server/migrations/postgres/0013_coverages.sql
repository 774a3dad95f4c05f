-- A patient's insurance coverages (see the SQLite migration of the same name).
CREATE TABLE coverages (
    id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    patient_id TEXT NOT NULL REFERENCES patients(id),
    record TEXT NOT NULL,
    version BIGINT NOT NULL
);
CREATE INDEX coverages_by_patient ON coverages (clinic_id, patient_id);
-- Never deleted: the application role may add and change, not remove.
GRANT SELECT, INSERT, UPDATE ON coverages TO clinicdesk_app;
ALTER TABLE coverages ENABLE ROW LEVEL SECURITY;
CREATE POLICY clinic_rows ON coverages TO clinicdesk_app
    USING (clinic_id = current_setting('clinicdesk.clinic_id', true))
    WITH CHECK (clinic_id = current_setting('clinicdesk.clinic_id', true));
