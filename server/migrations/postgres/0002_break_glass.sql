-- Care teams and break-glass (see the SQLite migration of the same name).

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
    granted_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    reviewed_by TEXT REFERENCES users(id),
    reviewed_at_ms BIGINT,
    review_note TEXT
);
CREATE INDEX break_glass_by_user ON break_glass_grants (clinic_id, user_id, patient_id, expires_at_ms);
CREATE INDEX break_glass_by_time ON break_glass_grants (clinic_id, granted_at_ms);

-- The application adds grants and writes each review once (the only column it may
-- update); it never removes a grant.
GRANT SELECT, INSERT, DELETE ON care_team TO clinicdesk_app;
GRANT SELECT, INSERT ON break_glass_grants TO clinicdesk_app;
GRANT UPDATE (reviewed_by, reviewed_at_ms, review_note) ON break_glass_grants TO clinicdesk_app;

-- Both are clinic rows behind the same second wall as patients.
ALTER TABLE care_team ENABLE ROW LEVEL SECURITY;
ALTER TABLE break_glass_grants ENABLE ROW LEVEL SECURITY;
CREATE POLICY clinic_rows ON care_team TO clinicdesk_app
    USING (clinic_id = current_setting('clinicdesk.clinic_id', true))
    WITH CHECK (clinic_id = current_setting('clinicdesk.clinic_id', true));
CREATE POLICY clinic_rows ON break_glass_grants TO clinicdesk_app
    USING (clinic_id = current_setting('clinicdesk.clinic_id', true))
    WITH CHECK (clinic_id = current_setting('clinicdesk.clinic_id', true));

-- A review is written once, as on SQLite.
CREATE FUNCTION break_glass_review_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.reviewed_at_ms IS NOT NULL THEN
        RAISE EXCEPTION 'a break-glass grant is reviewed once';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER break_glass_review_once BEFORE UPDATE ON break_glass_grants
    FOR EACH ROW EXECUTE FUNCTION break_glass_review_once();
