-- When each practitioner can be booked (see the SQLite migration of the same name).
CREATE TABLE working_hours (
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    practitioner_id TEXT NOT NULL REFERENCES users(id),
    periods TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (clinic_id, practitioner_id)
);
GRANT SELECT, INSERT, UPDATE ON working_hours TO clinicdesk_app;
ALTER TABLE working_hours ENABLE ROW LEVEL SECURITY;
CREATE POLICY clinic_rows ON working_hours TO clinicdesk_app
    USING (clinic_id = current_setting('clinicdesk.clinic_id', true))
    WITH CHECK (clinic_id = current_setting('clinicdesk.clinic_id', true));
