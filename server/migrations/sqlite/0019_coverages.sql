-- A patient's insurance coverages, as records (content, version, history in
-- record_versions). Never deleted: a coverage that no longer applies is marked inactive.
CREATE TABLE coverages (
    id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    patient_id TEXT NOT NULL REFERENCES patients(id),
    record TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE INDEX coverages_by_patient ON coverages (clinic_id, patient_id);
CREATE TRIGGER coverages_no_delete BEFORE DELETE ON coverages
BEGIN SELECT RAISE(ABORT, 'coverages are never deleted'); END;
