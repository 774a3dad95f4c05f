-- The workstations' escrowed secrets and recovery keys go behind the clinic wall like the
-- patients: the server reads and writes them only in a transaction that names the clinic
-- (the enrollment's, once its code is redeemed; the sign-in's workstation; the caller's).
ALTER TABLE device_escrow ENABLE ROW LEVEL SECURITY;
CREATE POLICY clinic_rows ON device_escrow TO clinicdesk_app
    USING (clinic_id = current_setting('clinicdesk.clinic_id', true))
    WITH CHECK (clinic_id = current_setting('clinicdesk.clinic_id', true));
