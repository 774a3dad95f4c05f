-- Every change of a user's role, with when (issue 22, "What a workstation may claim"): ingest
-- judges the role a workstation claims for an event against the role in force at the event's
-- time, which the sign-in alone does not tell once an admin changed the role while the
-- workstation worked offline. Append-only, like the trail.
CREATE TABLE role_changes (
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    role TEXT NOT NULL,
    changed_at_ms INTEGER NOT NULL
);
CREATE INDEX role_changes_by_user ON role_changes (user_id, changed_at_ms);
CREATE TRIGGER role_changes_no_update BEFORE UPDATE ON role_changes
BEGIN SELECT RAISE(ABORT, 'role_changes is append-only'); END;
CREATE TRIGGER role_changes_no_delete BEFORE DELETE ON role_changes
BEGIN SELECT RAISE(ABORT, 'role_changes is append-only'); END;
