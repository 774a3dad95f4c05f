-- The role each sign-in was granted. Sessions are never deleted, so with their device they are
-- the record of who signed in on which workstation, as what, and when: ingest checks a
-- workstation's events against it (an event's actor must have signed in there, with the
-- role the event claims). Sessions opened before this migration take the user's role now,
-- the best that is known of them.
ALTER TABLE sessions ADD COLUMN role TEXT;
UPDATE sessions SET role = (SELECT u.role FROM users u WHERE u.id = sessions.user_id)
    WHERE role IS NULL;
CREATE INDEX sessions_by_device_user ON sessions (device_id, user_id, created_at_ms);
