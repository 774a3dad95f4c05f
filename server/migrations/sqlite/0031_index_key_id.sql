-- Which of the clinic's blind-index keys made a patient's SSN indexes, so `keys rotate
-- --reencrypt` can move them to a new index key in resumable batches, and searches look under
-- every key while it runs. Every index made before this was made by the clinic's first (and
-- only) index key, 1.
ALTER TABLE patients ADD COLUMN ssn_index_key INTEGER NOT NULL DEFAULT 1;
