-- When each practitioner can be booked: their week as JSON periods in the clinic's local
-- time. No row: the default week (Monday to Friday, 09:00 to 17:00).
CREATE TABLE working_hours (
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    practitioner_id TEXT NOT NULL REFERENCES users(id),
    periods TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (clinic_id, practitioner_id)
);
