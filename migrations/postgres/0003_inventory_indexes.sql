-- The Devices page sorts by last seen with DevId breaking ties, and the device
-- page lists a device's latest jobs. NULLS FIRST: never-seen devices sort as
-- the oldest, as on SQLite.
DROP INDEX devices_last_seen;
CREATE INDEX devices_last_seen_devid ON devices (last_seen NULLS FIRST, devid);
CREATE INDEX jobs_devid_id ON jobs (devid, id);
