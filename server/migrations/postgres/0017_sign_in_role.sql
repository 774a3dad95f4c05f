-- The role each sign-in was granted (see the SQLite migration of the same name).
ALTER TABLE sessions ADD COLUMN role TEXT;
UPDATE sessions SET role = (SELECT u.role FROM users u WHERE u.id = sessions.user_id)
    WHERE role IS NULL;
CREATE INDEX sessions_by_device_user ON sessions (device_id, user_id, created_at_ms);

-- An event naming an actor who never signed in on its workstation is kept as an alert of its
-- own kind, `unknown_actor`.
ALTER TABLE audit_alerts DROP CONSTRAINT audit_alerts_kind_check;
ALTER TABLE audit_alerts ADD CONSTRAINT audit_alerts_kind_check
    CHECK (kind IN ('fork', 'chain_break', 'unknown_actor'));
