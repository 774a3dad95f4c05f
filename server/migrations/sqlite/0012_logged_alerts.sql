-- Each tamper alert is also recorded as a `tamper_alert` event of the clinic's server chain
-- (a leaf of the log, naming the refused event's hash), so an alert cannot be quietly
-- removed, changed or made up: `audit verify` matches every alert row to its event.
ALTER TABLE audit_alerts ADD COLUMN logged_event_id TEXT REFERENCES audit_events(id);
