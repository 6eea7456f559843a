-- A device's DevDetail and cached tree (several KB with values and ACLs)
-- in a table of their own. The device's row changes in every DM session
-- (nonces, last seen), and a row is rewritten whole, so with them inside
-- every session wrote their pages again.
CREATE TABLE device_inventory (
    devid     TEXT NOT NULL PRIMARY KEY REFERENCES devices (devid) ON DELETE CASCADE,
    devdetail TEXT NOT NULL DEFAULT '{}',
    tree      TEXT NOT NULL DEFAULT '[]'
);
INSERT INTO device_inventory (devid, devdetail, tree)
    SELECT devid, devdetail, tree FROM devices WHERE devdetail <> '{}' OR tree <> '[]';
ALTER TABLE devices DROP COLUMN devdetail;
ALTER TABLE devices DROP COLUMN tree;
