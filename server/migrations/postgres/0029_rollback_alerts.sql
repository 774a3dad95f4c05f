-- A workstation holding a receipt for more than the store now holds (a rollback: restored
-- from an older backup) is kept as an alert of its own kind, `rollback`, with that receipt as
-- its evidence (see the SQLite migration of the same name).
ALTER TABLE audit_alerts DROP CONSTRAINT audit_alerts_kind_check;
ALTER TABLE audit_alerts ADD CONSTRAINT audit_alerts_kind_check
    CHECK (kind IN ('fork', 'chain_break', 'unknown_actor', 'rollback'));
