-- Each clinic's IANA time zone: "today", day and week views and appointment times are
-- computed in it. Set at provisioning, changeable by the clinic's admin.
ALTER TABLE clinics ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';
