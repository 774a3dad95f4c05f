-- The clinic's medical record number for each patient: what the front desk searches by
-- and reads back on the phone. Unique within a clinic once set.
ALTER TABLE patients ADD COLUMN mrn TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX patients_clinic_mrn ON patients (clinic_id, mrn) WHERE mrn <> '';
