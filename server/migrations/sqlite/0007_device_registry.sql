-- What an admin needs to know about each workstation: who let it in, which app it runs.
-- enrolled_by is the admin who issued the enrollment code (NULL: the operator's console).
ALTER TABLE enrollment_codes ADD COLUMN issued_by TEXT REFERENCES users(id);
ALTER TABLE devices ADD COLUMN enrolled_by TEXT REFERENCES users(id);
ALTER TABLE devices ADD COLUMN app_version TEXT;
