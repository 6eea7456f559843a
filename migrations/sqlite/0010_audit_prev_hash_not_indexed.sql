-- An entry's prev_hash is no longer indexed. Its UNIQUE constraint kept two
-- writers from appending after the same entry, which the primary key does
-- as well: an entry's seq is its predecessor's plus one, so two such
-- entries collide on seq (and the chain check finds a gap or a fork). The
-- index on a random hash cost every append a write to a random page of it.
-- SQLite drops a constraint by copying the table; the entries, their order
-- and their hashes are kept as they are.
CREATE TABLE audit_log_next (
    seq       INTEGER PRIMARY KEY,
    time      INTEGER NOT NULL,
    code      INTEGER NOT NULL,
    actor     TEXT    NOT NULL,
    subject   TEXT    NOT NULL,
    source    TEXT    NOT NULL,
    details   TEXT    NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL
);
INSERT INTO audit_log_next (seq, time, code, actor, subject, source, details, prev_hash, hash)
    SELECT seq, time, code, actor, subject, source, details, prev_hash, hash
    FROM audit_log ORDER BY seq;
DROP TABLE audit_log;
ALTER TABLE audit_log_next RENAME TO audit_log;
CREATE INDEX audit_log_time ON audit_log (time);
CREATE INDEX audit_log_actor ON audit_log (actor);
CREATE INDEX audit_log_subject ON audit_log (subject);
CREATE INDEX audit_log_code ON audit_log (code);

-- Nothing in the product changes or removes an audit entry.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
