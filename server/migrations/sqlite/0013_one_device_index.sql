-- (device_id, device_seq) is already unique, and a device belongs to one clinic: that index
-- serves every lookup by (clinic, device, seq), and this copy of it only cost every stored
-- event one more index page to write.
DROP INDEX audit_by_device;
