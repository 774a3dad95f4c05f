-- A patient imported from another system keeps its id there (e.g. `Patient/<id>` of a FHIR
-- Bulk Data export), so that importing the same export again changes nothing.
ALTER TABLE patients ADD COLUMN import_key TEXT;
CREATE UNIQUE INDEX patients_by_import_key ON patients (clinic_id, import_key)
    WHERE import_key IS NOT NULL;
