-- Tamper alerts as leaves of the log (see the SQLite migration of the same name).
ALTER TABLE audit_alerts ADD COLUMN logged_event_id TEXT REFERENCES audit_events(id);
