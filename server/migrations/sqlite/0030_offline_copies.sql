-- What each user's offline copy on each workstation holds, as the workstation last said:
-- counts only (patients, days), never who. An admin sees them per workstation in the
-- devices list. A sign-out removes the copy, and the app then reports nothing held, which
-- deletes the row (a lock keeps the copy, and the row).
CREATE TABLE offline_copies (
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    device_id TEXT NOT NULL REFERENCES devices(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    patients INTEGER NOT NULL,
    days INTEGER NOT NULL,
    reported_at_ms INTEGER NOT NULL,
    PRIMARY KEY (device_id, user_id)
);
CREATE INDEX offline_copies_by_clinic ON offline_copies (clinic_id, device_id);
