-- The Devices page: every sort ends in DevId so pages are stable, and each
-- filter column can be walked in DevId or last-seen order without sorting
-- (see server/benches/INVENTORY.md). The device page lists a device's latest
-- jobs.
DROP INDEX devices_last_seen;
CREATE INDEX devices_last_seen_devid ON devices (last_seen, devid);
CREATE INDEX devices_man_seen ON devices (man, last_seen, devid);
CREATE INDEX devices_model_seen ON devices (model, last_seen, devid);
CREATE INDEX devices_authority_seen ON devices (authority, last_seen, devid);
CREATE INDEX devices_state_seen ON devices (state, last_seen, devid);
CREATE INDEX jobs_devid_id ON jobs (devid, id);
