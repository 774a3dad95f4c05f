-- A device row is an enrolled workstation, or a clinic's server chain: the chain of audit
-- events the server itself records (every PHI response), signed with the server's audit
-- key. A server row is never a login or upload credential; its public_key column holds a
-- marker (`server:<clinic id>`), not a key, because the server key lives in the data dir.
ALTER TABLE devices ADD COLUMN kind TEXT NOT NULL DEFAULT 'workstation'
    CHECK (kind IN ('workstation', 'server'));
CREATE UNIQUE INDEX one_server_chain_per_clinic ON devices (clinic_id) WHERE kind = 'server';
