-- A workstation holding a receipt for more than the store now holds (a rollback: restored
-- from an older backup) is kept as an alert of its own kind, `rollback`, with that receipt as
-- its evidence. SQLite cannot change a CHECK constraint in place, so the table is rebuilt
-- with its rows, and its append-only triggers made again (as in 0024).
CREATE TABLE audit_alerts_rebuilt (
    id INTEGER PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    device_id TEXT NOT NULL REFERENCES devices(id),
    device_seq INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('fork', 'chain_break', 'unknown_actor', 'rollback')),
    hash TEXT NOT NULL,
    event_json TEXT NOT NULL,
    signature TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL,
    logged_event_id TEXT REFERENCES audit_events(id),
    UNIQUE (device_id, device_seq, hash)
);
INSERT INTO audit_alerts_rebuilt (id, clinic_id, device_id, device_seq, kind, hash, event_json,
        signature, received_at_ms, logged_event_id)
    SELECT id, clinic_id, device_id, device_seq, kind, hash, event_json, signature,
        received_at_ms, logged_event_id
    FROM audit_alerts;
DROP TABLE audit_alerts;
ALTER TABLE audit_alerts_rebuilt RENAME TO audit_alerts;
CREATE TRIGGER audit_alerts_no_update BEFORE UPDATE ON audit_alerts
BEGIN SELECT RAISE(ABORT, 'audit_alerts is append-only'); END;
CREATE TRIGGER audit_alerts_no_delete BEFORE DELETE ON audit_alerts
BEGIN SELECT RAISE(ABORT, 'audit_alerts is append-only'); END;
