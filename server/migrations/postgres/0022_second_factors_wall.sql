-- The users' second factors (TOTP secrets, security keys, recovery codes) go behind the clinic
-- wall: the server reads and writes them only in a transaction that names the clinic (the
-- sign-in's workstation, its ticket, or the caller's session).
ALTER TABLE mfa_totp ENABLE ROW LEVEL SECURITY;
CREATE POLICY clinic_rows ON mfa_totp TO clinicdesk_app
    USING (clinic_id = current_setting('clinicdesk.clinic_id', true))
    WITH CHECK (clinic_id = current_setting('clinicdesk.clinic_id', true));
ALTER TABLE mfa_webauthn ENABLE ROW LEVEL SECURITY;
CREATE POLICY clinic_rows ON mfa_webauthn TO clinicdesk_app
    USING (clinic_id = current_setting('clinicdesk.clinic_id', true))
    WITH CHECK (clinic_id = current_setting('clinicdesk.clinic_id', true));
ALTER TABLE mfa_recovery_codes ENABLE ROW LEVEL SECURITY;
CREATE POLICY clinic_rows ON mfa_recovery_codes TO clinicdesk_app
    USING (clinic_id = current_setting('clinicdesk.clinic_id', true))
    WITH CHECK (clinic_id = current_setting('clinicdesk.clinic_id', true));
