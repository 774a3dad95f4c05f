-- A patient's id in the system it was imported from (see the SQLite migration).
ALTER TABLE patients ADD COLUMN import_key TEXT;
CREATE UNIQUE INDEX patients_by_import_key ON patients (clinic_id, import_key)
    WHERE import_key IS NOT NULL;
