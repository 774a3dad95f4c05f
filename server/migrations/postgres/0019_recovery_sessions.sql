-- Whether a session was opened by a recovery sign-in (see the SQLite migration of the same
-- name).
ALTER TABLE mfa_tickets ADD COLUMN recovery BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN recovery BIGINT NOT NULL DEFAULT 0;
