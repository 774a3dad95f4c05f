-- Each clinic's IANA time zone (see the SQLite migration of the same name).
ALTER TABLE clinics ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';
