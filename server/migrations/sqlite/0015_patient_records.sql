-- Patient records you can write: the registration and contact fields as one stored content
-- (JSON text), its version, and an append-only history of every version with who changed
-- what and when. `name`, `birth_date`, `phone` and `mrn` stay as columns derived from the
-- content, for the schedule and searches; a write keeps them in step.
ALTER TABLE patients ADD COLUMN record TEXT NOT NULL DEFAULT '{}';
-- 0: seeded or stored before the record layer, with no history yet; a write makes 1.
ALTER TABLE patients ADD COLUMN version INTEGER NOT NULL DEFAULT 0;

UPDATE patients SET record = json_object(
    'mrn', mrn,
    'name', json_object(
        'given', CASE WHEN instr(name, ' ') > 0 THEN substr(name, 1, instr(name, ' ') - 1) ELSE '' END,
        'family', CASE WHEN instr(name, ' ') > 0 THEN substr(name, instr(name, ' ') + 1) ELSE name END),
    'birth_date', birth_date,
    'phone', phone);

-- Every version of every record, whatever its resource type: later resources (coverage,
-- appointments, clinical content) are new rows here, not new tables. `body` is the stored
-- content exactly as hashed into the `change` of the audit event `audit_event_id`.
CREATE TABLE record_versions (
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    resource_type TEXT NOT NULL,
    record_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    patient_id TEXT,
    body TEXT NOT NULL,
    changed_fields TEXT NOT NULL,
    actor_user_id TEXT NOT NULL,
    actor_role TEXT NOT NULL,
    device_id TEXT,
    recorded_at_ms INTEGER NOT NULL,
    reason TEXT NOT NULL,
    audit_event_id TEXT NOT NULL REFERENCES audit_events(id),
    PRIMARY KEY (clinic_id, resource_type, record_id, version)
);
CREATE TRIGGER record_versions_no_update BEFORE UPDATE ON record_versions
BEGIN SELECT RAISE(ABORT, 'record_versions is append-only'); END;
CREATE TRIGGER record_versions_no_delete BEFORE DELETE ON record_versions
BEGIN SELECT RAISE(ABORT, 'record_versions is append-only'); END;

-- Possible duplicates: the same name and birth date, or the same phone.
CREATE INDEX patients_by_name_birth ON patients (clinic_id, name, birth_date);
CREATE INDEX patients_by_phone ON patients (clinic_id, phone);

-- As-you-type search by the start of a family or given name, lower-cased, derived from the
-- content like `name`; range scans on these indexes serve prefixes on both stores.
ALTER TABLE patients ADD COLUMN family_key TEXT NOT NULL DEFAULT '';
ALTER TABLE patients ADD COLUMN given_key TEXT NOT NULL DEFAULT '';
UPDATE patients SET
    family_key = lower(json_extract(record, '$.name.family')),
    given_key = lower(json_extract(record, '$.name.given'));
CREATE INDEX patients_by_family ON patients (clinic_id, family_key, given_key);
CREATE INDEX patients_by_given ON patients (clinic_id, given_key);
CREATE INDEX patients_by_birth ON patients (clinic_id, birth_date);
