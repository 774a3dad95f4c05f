-- Whether a session was opened by a recovery sign-in: the device proof signed by the
-- workstation's recovery key, then a second factor proven afresh (never a grant). Only such a
-- session may have the workstation's escrowed device secret released. The ticket between
-- the two steps carries the same mark.
ALTER TABLE mfa_tickets ADD COLUMN recovery INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN recovery INTEGER NOT NULL DEFAULT 0;
