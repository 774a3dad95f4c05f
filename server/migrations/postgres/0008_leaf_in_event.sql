-- Each event's place in the log moves into its row, and the log stores only perfect
-- subtrees of 16 leaves or more (see the SQLite migration of the same name). This store
-- always had its log, so every event has its place and the column can be NOT NULL.
ALTER TABLE audit_events ADD COLUMN leaf_index BIGINT;
UPDATE audit_events e SET leaf_index = l.leaf_index FROM audit_leaves l WHERE l.event_id = e.id;
ALTER TABLE audit_events ALTER COLUMN leaf_index SET NOT NULL;
CREATE UNIQUE INDEX audit_by_leaf ON audit_events (clinic_id, leaf_index);
DROP TABLE audit_leaves;
DELETE FROM audit_nodes WHERE level < 4;
-- A server chain's tip is its last event; heads are workstations' upload progress only.
DELETE FROM audit_device_heads WHERE device_id IN (SELECT id FROM devices WHERE kind = 'server');
