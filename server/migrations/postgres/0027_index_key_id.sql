-- See the SQLite migration of the same name.
ALTER TABLE patients ADD COLUMN ssn_index_key BIGINT NOT NULL DEFAULT 1;
