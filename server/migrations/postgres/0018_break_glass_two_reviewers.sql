-- Break-glass review by two different admins (see the SQLite migration of the same name).
ALTER TABLE clinics ADD COLUMN break_glass_reviewers INTEGER NOT NULL DEFAULT 2
    CHECK (break_glass_reviewers IN (1, 2));
ALTER TABLE break_glass_grants ADD COLUMN reviews_required INTEGER NOT NULL DEFAULT 1;

CREATE TABLE break_glass_reviews (
    grant_id TEXT NOT NULL REFERENCES break_glass_grants(id),
    clinic_id TEXT NOT NULL REFERENCES clinics(id),
    reviewer_id TEXT NOT NULL REFERENCES users(id),
    reviewed_at_ms BIGINT NOT NULL,
    note TEXT NOT NULL,
    PRIMARY KEY (grant_id, reviewer_id)
);
CREATE INDEX break_glass_reviews_by_clinic ON break_glass_reviews (clinic_id, grant_id);
INSERT INTO break_glass_reviews (grant_id, clinic_id, reviewer_id, reviewed_at_ms, note)
    SELECT id, clinic_id, reviewed_by, reviewed_at_ms, coalesce(review_note, '')
    FROM break_glass_grants WHERE reviewed_at_ms IS NOT NULL AND reviewed_by IS NOT NULL;

-- Append-only for the application, and behind the clinic wall like the grants.
GRANT SELECT, INSERT ON break_glass_reviews TO clinicdesk_app;
ALTER TABLE break_glass_reviews ENABLE ROW LEVEL SECURITY;
CREATE POLICY clinic_rows ON break_glass_reviews TO clinicdesk_app
    USING (clinic_id = current_setting('clinicdesk.clinic_id', true))
    WITH CHECK (clinic_id = current_setting('clinicdesk.clinic_id', true));
