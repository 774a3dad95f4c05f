-- Each kind of match a search looks for is read in its index's order, to the id, and only as
-- far as the page asked for: a two-letter name in a clinic of 100,000 reads a page of rows,
-- not every match (see `store::records::search`).
DROP INDEX patients_by_family;
CREATE INDEX patients_by_family ON patients (clinic_id, family_key, given_key, id);
DROP INDEX patients_by_given;
CREATE INDEX patients_by_given ON patients (clinic_id, given_key, family_key, id);
DROP INDEX patients_by_phone_key;
CREATE INDEX patients_by_phone_key ON patients (clinic_id, phone_key, id);
