-- Appointments you can book and change (see the SQLite migration of the same name).
ALTER TABLE appointments ADD COLUMN record TEXT NOT NULL DEFAULT '{}';
ALTER TABLE appointments ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE appointments ADD COLUMN practitioner_id TEXT;
ALTER TABLE appointments ADD COLUMN duration_mins BIGINT NOT NULL DEFAULT 30;
ALTER TABLE appointments ADD COLUMN status TEXT NOT NULL DEFAULT 'booked';
CREATE INDEX appointments_by_practitioner ON appointments (clinic_id, practitioner_id, starts_at_ms);

CREATE TABLE encounters (
    id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    patient_id TEXT NOT NULL REFERENCES patients(id),
    appointment_id TEXT NOT NULL REFERENCES appointments(id),
    started_at_ms BIGINT NOT NULL
);
CREATE UNIQUE INDEX encounters_by_appointment ON encounters (clinic_id, appointment_id);
GRANT SELECT, INSERT ON encounters TO clinicdesk_app;
ALTER TABLE encounters ENABLE ROW LEVEL SECURITY;
CREATE POLICY clinic_rows ON encounters TO clinicdesk_app
    USING (clinic_id = current_setting('clinicdesk.clinic_id', true))
    WITH CHECK (clinic_id = current_setting('clinicdesk.clinic_id', true));
