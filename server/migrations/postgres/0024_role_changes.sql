-- Every change of a user's role, with when (issue 22, "What a workstation may claim"): ingest
-- judges the role a workstation claims for an event against the role in force at the event's
-- time, which the sign-in alone does not tell once an admin changed the role while the
-- workstation worked offline. Append-only for the application (INSERT and SELECT only), and
-- behind the clinic wall.
CREATE TABLE role_changes (
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    role TEXT NOT NULL,
    changed_at_ms BIGINT NOT NULL
);
CREATE INDEX role_changes_by_user ON role_changes (user_id, changed_at_ms);
GRANT SELECT, INSERT ON role_changes TO clinicdesk_app;
ALTER TABLE role_changes ENABLE ROW LEVEL SECURITY;
CREATE POLICY clinic_rows ON role_changes TO clinicdesk_app
    USING (clinic_id = current_setting('clinicdesk.clinic_id', true))
    WITH CHECK (clinic_id = current_setting('clinicdesk.clinic_id', true));
