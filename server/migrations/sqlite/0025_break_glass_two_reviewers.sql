-- Break-glass review by two different admins (a clinic policy, 1 or 2; 2 by default), so that
-- one admin cannot open a grant for an account they control and close its review alone.
-- Each grant keeps the policy it was opened under (grants opened before: 1, the old rule);
-- every review is its own append-only row; the grant's `reviewed_*` columns take the review
-- that completed it.
ALTER TABLE clinics ADD COLUMN break_glass_reviewers INTEGER NOT NULL DEFAULT 2
    CHECK (break_glass_reviewers IN (1, 2));
ALTER TABLE break_glass_grants ADD COLUMN reviews_required INTEGER NOT NULL DEFAULT 1;

CREATE TABLE break_glass_reviews (
    grant_id TEXT NOT NULL REFERENCES break_glass_grants(id),
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    reviewer_id TEXT NOT NULL REFERENCES users(id),
    reviewed_at_ms INTEGER NOT NULL,
    note TEXT NOT NULL,
    PRIMARY KEY (grant_id, reviewer_id)
);
CREATE INDEX break_glass_reviews_by_clinic ON break_glass_reviews (clinic_id, grant_id);
INSERT INTO break_glass_reviews (grant_id, clinic_id, reviewer_id, reviewed_at_ms, note)
    SELECT id, clinic_id, reviewed_by, reviewed_at_ms, coalesce(review_note, '')
    FROM break_glass_grants WHERE reviewed_at_ms IS NOT NULL AND reviewed_by IS NOT NULL;
CREATE TRIGGER break_glass_reviews_no_update BEFORE UPDATE ON break_glass_reviews
BEGIN SELECT RAISE(ABORT, 'break_glass_reviews is append-only'); END;
CREATE TRIGGER break_glass_reviews_no_delete BEFORE DELETE ON break_glass_reviews
BEGIN SELECT RAISE(ABORT, 'break_glass_reviews is append-only'); END;
