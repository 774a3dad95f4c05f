-- Each event's place in its clinic's Merkle log moves into the event's own row, and the log
-- stores only perfect subtrees of 16 leaves or more. Every stored event used to write a
-- leaf row, that row's event-id index entry and about two node rows; it now writes one
-- index entry, and one node row per eight events. What is no longer stored is derived: a
-- leaf hash is computed from its event's stored hash, a smaller subtree from at most eight
-- of them (`log::nodes_of`), and `audit verify` recomputes all of it anyway.
ALTER TABLE audit_events ADD COLUMN leaf_index INTEGER;

DROP TRIGGER audit_events_no_update;
UPDATE audit_events SET leaf_index =
    (SELECT l.leaf_index FROM audit_leaves l WHERE l.event_id = audit_events.id);
-- An event never changes, but for one thing: an event stored before its clinic's log
-- existed is given its place once (`log::adopt_unlogged`). A column added to this table
-- later must be added to this list.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE OF
    id, clinic_id, device_id, device_seq, actor_user_id, patient_id, action, occurred_at_ms,
    event_json, hash, signature, received_at_ms
ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_placed_once BEFORE UPDATE OF leaf_index ON audit_events
WHEN OLD.leaf_index IS NOT NULL
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE UNIQUE INDEX audit_by_leaf ON audit_events (clinic_id, leaf_index);

DROP TABLE audit_leaves;

DROP TRIGGER audit_nodes_no_delete;
DELETE FROM audit_nodes WHERE level < 4;
CREATE TRIGGER audit_nodes_no_delete BEFORE DELETE ON audit_nodes
BEGIN SELECT RAISE(ABORT, 'audit_nodes is append-only'); END;

-- A server chain's tip is its last event (it has no gaps); heads are workstations' upload
-- progress only, and a server chain's row would no longer move.
DELETE FROM audit_device_heads WHERE device_id IN (SELECT id FROM devices WHERE kind = 'server');
