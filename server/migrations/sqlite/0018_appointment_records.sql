-- Appointments you can book and change: the record layer's content and version, and the
-- columns derived from it that the schedule and double-booking checks select on. Rows
-- stored before (version 0) read their fields from the columns. A check-in opens the
-- visit's encounter.
ALTER TABLE appointments ADD COLUMN record TEXT NOT NULL DEFAULT '{}';
ALTER TABLE appointments ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE appointments ADD COLUMN practitioner_id TEXT;
ALTER TABLE appointments ADD COLUMN duration_mins INTEGER NOT NULL DEFAULT 30;
ALTER TABLE appointments ADD COLUMN status TEXT NOT NULL DEFAULT 'booked';
CREATE INDEX appointments_by_practitioner ON appointments (clinic_id, practitioner_id, starts_at_ms);

CREATE TABLE encounters (
    id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    patient_id TEXT NOT NULL REFERENCES patients(id),
    appointment_id TEXT NOT NULL REFERENCES appointments(id),
    started_at_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX encounters_by_appointment ON encounters (clinic_id, appointment_id);
