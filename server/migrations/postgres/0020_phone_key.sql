-- A patient's phone number as searches compare it (see the SQLite migration of the same name).
ALTER TABLE patients ADD COLUMN phone_key TEXT NOT NULL DEFAULT '';
UPDATE patients SET phone_key = replace(replace(replace(replace(replace(replace(
    phone, ' ', ''), '+', ''), '-', ''), '(', ''), ')', ''), '.', '');
CREATE INDEX patients_by_phone_key ON patients (clinic_id, phone_key);
