-- Failed sign-in attempts, per account and per client address, in the database so every
-- server instance sees the same counts. A key is locked out while locked_until_ms is ahead.
CREATE TABLE auth_failures (
    key TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    window_start_ms INTEGER NOT NULL,
    locked_until_ms INTEGER
);
