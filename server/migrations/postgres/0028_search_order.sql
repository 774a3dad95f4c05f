-- See the SQLite migration of the same name.
DROP INDEX patients_by_family;
CREATE INDEX patients_by_family ON patients (clinic_id, family_key, given_key, id);
DROP INDEX patients_by_given;
CREATE INDEX patients_by_given ON patients (clinic_id, given_key, family_key, id);
DROP INDEX patients_by_phone_key;
CREATE INDEX patients_by_phone_key ON patients (clinic_id, phone_key, id);
