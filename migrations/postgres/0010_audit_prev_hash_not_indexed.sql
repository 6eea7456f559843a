-- An entry's prev_hash is no longer indexed. Its UNIQUE constraint kept two
-- writers from appending after the same entry, which the primary key does
-- as well: an entry's seq is its predecessor's plus one, so two such
-- entries collide on seq (and the chain check finds a gap or a fork). The
-- index on a random hash cost every append a write to a random page of it.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_prev_hash_key;
