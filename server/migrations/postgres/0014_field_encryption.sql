-- Sensitive fields encrypted by the server (see the SQLite migration of the same name).
CREATE TABLE clinic_keys (
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    purpose TEXT NOT NULL CHECK (purpose IN ('data', 'index')),
    key_id BIGINT NOT NULL,
    kek_version BIGINT NOT NULL,
    wrapped TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    rotation_id BIGINT,
    PRIMARY KEY (clinic_id, purpose, key_id)
);
-- A re-encryption deletes a data key once no value is sealed under it.
GRANT SELECT, INSERT, UPDATE, DELETE ON clinic_keys TO clinicdesk_app;
ALTER TABLE clinic_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY clinic_rows ON clinic_keys TO clinicdesk_app
    USING (clinic_id = current_setting('clinicdesk.clinic_id', true))
    WITH CHECK (clinic_id = current_setting('clinicdesk.clinic_id', true));

CREATE TABLE sealed_values (
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    id TEXT NOT NULL,
    field TEXT NOT NULL,
    key_id BIGINT NOT NULL,
    sealed TEXT NOT NULL,
    PRIMARY KEY (clinic_id, id)
);
CREATE INDEX sealed_values_by_key ON sealed_values (clinic_id, key_id);
-- Never deleted: old versions of a record still name them.
GRANT SELECT, INSERT, UPDATE ON sealed_values TO clinicdesk_app;
ALTER TABLE sealed_values ENABLE ROW LEVEL SECURITY;
CREATE POLICY clinic_rows ON sealed_values TO clinicdesk_app
    USING (clinic_id = current_setting('clinicdesk.clinic_id', true))
    WITH CHECK (clinic_id = current_setting('clinicdesk.clinic_id', true));

ALTER TABLE patients ADD COLUMN ssn_index TEXT NOT NULL DEFAULT '';
ALTER TABLE patients ADD COLUMN ssn_last4_index TEXT NOT NULL DEFAULT '';
CREATE INDEX patients_by_ssn ON patients (clinic_id, ssn_index);
CREATE INDEX patients_by_ssn_last4 ON patients (clinic_id, ssn_last4_index);

-- Not a clinic's data: the operator's key rotations.
CREATE TABLE key_rotations (
    id BIGSERIAL PRIMARY KEY,
    kek_version BIGINT NOT NULL,
    reencrypt BIGINT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT
);
GRANT SELECT, INSERT, UPDATE ON key_rotations TO clinicdesk_app;
GRANT USAGE ON SEQUENCE key_rotations_id_seq TO clinicdesk_app;
