-- How long the app may keep working from its cache without reaching the server.
ALTER TABLE clinics ADD COLUMN max_offline_secs INTEGER NOT NULL DEFAULT 259200;
