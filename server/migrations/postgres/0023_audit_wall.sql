-- The audit trail goes behind the clinic wall (issue 22, "the second wall"): its rows name
-- patients, users and break-glass reasons. The server reads and writes them only in a
-- transaction that names the clinic: a request's scope, an upload's signed batch, or the
-- clinic whose log lock the transaction took (`store::clinics::lock_clinic` names it too).
-- The console's `audit verify` and the checkpoint publisher walk the clinics one by one.
ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY clinic_rows ON audit_events TO clinicdesk_app
    USING (clinic_id = current_setting('clinicdesk.clinic_id', true))
    WITH CHECK (clinic_id = current_setting('clinicdesk.clinic_id', true));
ALTER TABLE audit_alerts ENABLE ROW LEVEL SECURITY;
CREATE POLICY clinic_rows ON audit_alerts TO clinicdesk_app
    USING (clinic_id = current_setting('clinicdesk.clinic_id', true))
    WITH CHECK (clinic_id = current_setting('clinicdesk.clinic_id', true));
ALTER TABLE audit_device_heads ENABLE ROW LEVEL SECURITY;
CREATE POLICY clinic_rows ON audit_device_heads TO clinicdesk_app
    USING (clinic_id = current_setting('clinicdesk.clinic_id', true))
    WITH CHECK (clinic_id = current_setting('clinicdesk.clinic_id', true));
ALTER TABLE audit_nodes ENABLE ROW LEVEL SECURITY;
CREATE POLICY clinic_rows ON audit_nodes TO clinicdesk_app
    USING (clinic_id = current_setting('clinicdesk.clinic_id', true))
    WITH CHECK (clinic_id = current_setting('clinicdesk.clinic_id', true));
ALTER TABLE audit_checkpoints ENABLE ROW LEVEL SECURITY;
CREATE POLICY clinic_rows ON audit_checkpoints TO clinicdesk_app
    USING (clinic_id = current_setting('clinicdesk.clinic_id', true))
    WITH CHECK (clinic_id = current_setting('clinicdesk.clinic_id', true));
