-- Care teams and break-glass. A clinician reads the clinical summary of the patients on
-- their care team; any other patient of the clinic only under a break-glass grant: an hour
-- long, with a reason, every access flagged, each grant acknowledged by an admin.

CREATE TABLE care_team (
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    clinician_id TEXT NOT NULL REFERENCES users(id),
    patient_id TEXT NOT NULL REFERENCES patients(id),
    PRIMARY KEY (clinician_id, patient_id)
);
CREATE INDEX care_team_by_patient ON care_team (clinic_id, patient_id);

CREATE TABLE break_glass_grants (
    id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    patient_id TEXT NOT NULL REFERENCES patients(id),
    reason_code TEXT NOT NULL,
    reason_text TEXT NOT NULL,
    granted_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    reviewed_by TEXT REFERENCES users(id),
    reviewed_at_ms INTEGER,
    review_note TEXT
);
CREATE INDEX break_glass_by_user ON break_glass_grants (clinic_id, user_id, patient_id, expires_at_ms);
CREATE INDEX break_glass_by_time ON break_glass_grants (clinic_id, granted_at_ms);

-- A grant is never removed, and its review is written once.
CREATE TRIGGER break_glass_no_delete BEFORE DELETE ON break_glass_grants
BEGIN SELECT RAISE(ABORT, 'break_glass_grants is append-only'); END;
CREATE TRIGGER break_glass_review_once BEFORE UPDATE ON break_glass_grants
WHEN OLD.reviewed_at_ms IS NOT NULL
  OR NEW.id IS NOT OLD.id OR NEW.clinic_id IS NOT OLD.clinic_id
  OR NEW.user_id IS NOT OLD.user_id OR NEW.patient_id IS NOT OLD.patient_id
  OR NEW.reason_code IS NOT OLD.reason_code OR NEW.reason_text IS NOT OLD.reason_text
  OR NEW.granted_at_ms IS NOT OLD.granted_at_ms OR NEW.expires_at_ms IS NOT OLD.expires_at_ms
BEGIN SELECT RAISE(ABORT, 'a break-glass grant is reviewed once and otherwise unchanged'); END;
