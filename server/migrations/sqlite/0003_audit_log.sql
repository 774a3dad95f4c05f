-- The clinic's audit log as an RFC 9162 Merkle tree, its signed checkpoints, tamper alerts
-- and each device's upload progress. Everything but the progress rows is append-only.

-- Leaf `leaf_index` of a clinic's log is the event `event_id`, in the order they were stored.
CREATE TABLE audit_leaves (
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    leaf_index INTEGER NOT NULL,
    event_id TEXT NOT NULL UNIQUE REFERENCES audit_events(id),
    PRIMARY KEY (clinic_id, leaf_index)
) WITHOUT ROWID;

-- Perfect subtrees: 2^level leaves from idx * 2^level; level 0 holds the leaf hashes.
CREATE TABLE audit_nodes (
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (clinic_id, level, idx)
) WITHOUT ROWID;

-- Signed tree heads; at most one per size, each consistent with every earlier one.
CREATE TABLE audit_checkpoints (
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    tree_size INTEGER NOT NULL,
    root_hash TEXT NOT NULL,
    issued_at_ms INTEGER NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (clinic_id, tree_size)
) WITHOUT ROWID;

-- A signed event that contradicts the stored chain: a different event at a stored
-- sequence (`fork`), or one whose link disagrees with a stored neighbour (`chain_break`).
CREATE TABLE audit_alerts (
    id INTEGER PRIMARY KEY,
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    device_id TEXT NOT NULL REFERENCES devices(id),
    device_seq INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('fork', 'chain_break')),
    hash TEXT NOT NULL,
    event_json TEXT NOT NULL,
    signature TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL,
    UNIQUE (device_id, device_seq, hash)
);

-- Upload progress per device: derived from audit_events, kept for fast receipts.
CREATE TABLE audit_device_heads (
    device_id TEXT PRIMARY KEY REFERENCES devices(id),
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    contiguous_seq INTEGER NOT NULL,
    contiguous_hash TEXT NOT NULL,
    max_seq INTEGER NOT NULL
);

CREATE INDEX audit_by_time ON audit_events (clinic_id, occurred_at_ms);
CREATE INDEX audit_by_device ON audit_events (clinic_id, device_id, device_seq);

CREATE TRIGGER audit_leaves_no_update BEFORE UPDATE ON audit_leaves
BEGIN SELECT RAISE(ABORT, 'audit_leaves is append-only'); END;
CREATE TRIGGER audit_leaves_no_delete BEFORE DELETE ON audit_leaves
BEGIN SELECT RAISE(ABORT, 'audit_leaves is append-only'); END;
CREATE TRIGGER audit_nodes_no_update BEFORE UPDATE ON audit_nodes
BEGIN SELECT RAISE(ABORT, 'audit_nodes is append-only'); END;
CREATE TRIGGER audit_nodes_no_delete BEFORE DELETE ON audit_nodes
BEGIN SELECT RAISE(ABORT, 'audit_nodes is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_alerts_no_update BEFORE UPDATE ON audit_alerts
BEGIN SELECT RAISE(ABORT, 'audit_alerts is append-only'); END;
CREATE TRIGGER audit_alerts_no_delete BEFORE DELETE ON audit_alerts
BEGIN SELECT RAISE(ABORT, 'audit_alerts is append-only'); END;
