-- A patient's phone number as searches and the duplicate check compare it: its digits only,
-- so "(555) 010-4477", "555.010.4477" and "5550104477" are one number. The phone as typed
-- stays in `phone` for the schedule and chart. A stored phone holds only digits and
-- " +-()." (the record layer refuses anything else), so removing those six is exact.
ALTER TABLE patients ADD COLUMN phone_key TEXT NOT NULL DEFAULT '';
UPDATE patients SET phone_key = replace(replace(replace(replace(replace(replace(
    phone, ' ', ''), '+', ''), '-', ''), '(', ''), ')', ''), '.', '');
CREATE INDEX patients_by_phone_key ON patients (clinic_id, phone_key);
