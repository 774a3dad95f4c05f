-- Patient records you can write (see the SQLite migration of the same name).
ALTER TABLE patients ADD COLUMN record TEXT NOT NULL DEFAULT '{}';
ALTER TABLE patients ADD COLUMN version BIGINT NOT NULL DEFAULT 0;

UPDATE patients SET record = json_build_object(
    'mrn', mrn,
    'name', json_build_object(
        'given', CASE WHEN position(' ' IN name) > 0 THEN split_part(name, ' ', 1) ELSE '' END,
        'family', CASE WHEN position(' ' IN name) > 0
            THEN substr(name, position(' ' IN name) + 1) ELSE name END),
    'birth_date', birth_date,
    'phone', phone)::text;

CREATE TABLE record_versions (
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    resource_type TEXT NOT NULL,
    record_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    patient_id TEXT,
    body TEXT NOT NULL,
    changed_fields TEXT NOT NULL,
    actor_user_id TEXT NOT NULL,
    actor_role TEXT NOT NULL,
    device_id TEXT,
    recorded_at_ms BIGINT NOT NULL,
    reason TEXT NOT NULL,
    audit_event_id TEXT NOT NULL REFERENCES audit_events(id),
    PRIMARY KEY (clinic_id, resource_type, record_id, version)
);

-- History is append-only for the application role, exactly like the audit tables.
GRANT SELECT, INSERT ON record_versions TO clinicdesk_app;
ALTER TABLE record_versions ENABLE ROW LEVEL SECURITY;
CREATE POLICY clinic_rows ON record_versions TO clinicdesk_app
    USING (clinic_id = current_setting('clinicdesk.clinic_id', true))
    WITH CHECK (clinic_id = current_setting('clinicdesk.clinic_id', true));

CREATE INDEX patients_by_name_birth ON patients (clinic_id, name, birth_date);
CREATE INDEX patients_by_phone ON patients (clinic_id, phone);

-- COLLATE "C": byte order, so a prefix is a range scan whatever the database's locale.
ALTER TABLE patients ADD COLUMN family_key TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE patients ADD COLUMN given_key TEXT COLLATE "C" NOT NULL DEFAULT '';
UPDATE patients SET
    family_key = lower(record::json -> 'name' ->> 'family'),
    given_key = lower(record::json -> 'name' ->> 'given');
CREATE INDEX patients_by_family ON patients (clinic_id, family_key, given_key);
CREATE INDEX patients_by_given ON patients (clinic_id, given_key);
CREATE INDEX patients_by_birth ON patients (clinic_id, birth_date);
