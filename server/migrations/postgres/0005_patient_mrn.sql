-- Medical record numbers (see the SQLite migration of the same name).
ALTER TABLE patients ADD COLUMN mrn TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX patients_clinic_mrn ON patients (clinic_id, mrn) WHERE mrn <> '';
