-- Devices, their DM sessions, the command queue, notifications, API tokens.
CREATE TABLE devices (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    devid             TEXT    NOT NULL UNIQUE,
    man               TEXT    NOT NULL DEFAULT '',
    model             TEXT    NOT NULL DEFAULT '',
    dmv               TEXT    NOT NULL DEFAULT '',
    lang              TEXT    NOT NULL DEFAULT '',
    devdetail         TEXT    NOT NULL DEFAULT '{}',
    -- md5 | hmac | basic
    auth_type         TEXT    NOT NULL,
    client_name       TEXT    NOT NULL,
    client_secret_enc TEXT    NOT NULL,
    client_nonce      TEXT    NOT NULL,
    server_name       TEXT    NOT NULL,
    server_secret_enc TEXT    NOT NULL,
    server_nonce      TEXT    NOT NULL,
    push_address      TEXT    NOT NULL DEFAULT '',
    -- The ServerID that manages the device's root today (ours unless handed over).
    authority         TEXT    NOT NULL DEFAULT '',
    -- provisioned (never seen) | active | handed-over
    state             TEXT    NOT NULL DEFAULT 'provisioned',
    -- The device's tree as last read: JSON list of nodes with values and ACLs.
    tree              TEXT    NOT NULL DEFAULT '[]',
    created_at        INTEGER NOT NULL,
    first_seen        INTEGER,
    last_seen         INTEGER
);
CREATE INDEX devices_man ON devices (man, devid);
CREATE INDEX devices_model ON devices (model, devid);
CREATE INDEX devices_authority ON devices (authority, devid);
CREATE INDEX devices_state ON devices (state, devid);
CREATE INDEX devices_last_seen ON devices (last_seen);

CREATE TABLE dm_sessions (
    devid      TEXT    NOT NULL,
    session_id TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    messages   INTEGER NOT NULL DEFAULT 0,
    started_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    ended      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (devid, session_id)
);
CREATE INDEX dm_sessions_updated ON dm_sessions (ended, updated_at);

CREATE TABLE session_history (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    devid      TEXT    NOT NULL,
    session_id TEXT    NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at   INTEGER NOT NULL,
    -- completed | auth-failed | aborted | expired | error
    outcome    TEXT    NOT NULL,
    messages   INTEGER NOT NULL,
    commands   INTEGER NOT NULL,
    source     TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX session_history_devid ON session_history (devid, id);

CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    devid        TEXT    NOT NULL,
    -- The command as JSON (Get, Replace, Add, Delete, Exec, Copy, Atomic, Sequence).
    command      TEXT    NOT NULL,
    -- queued | sent | succeeded | failed
    state        TEXT    NOT NULL DEFAULT 'queued',
    status       INTEGER,
    results      TEXT,
    error        TEXT    NOT NULL DEFAULT '',
    session_id   TEXT    NOT NULL DEFAULT '',
    requested_by TEXT    NOT NULL DEFAULT '',
    notify       INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX jobs_devid_state ON jobs (devid, state, id);

CREATE TABLE notification_outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    devid        TEXT    NOT NULL,
    -- http (pushed by the server) | gateway (picked up by an SMS/WAP gateway)
    transport    TEXT    NOT NULL,
    address      TEXT    NOT NULL,
    -- package 0, base64
    payload      TEXT    NOT NULL,
    -- pending | sent | failed
    state        TEXT    NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    error        TEXT    NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    sent_at      INTEGER
);
CREATE INDEX notification_outbox_state ON notification_outbox (state, id);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL REFERENCES users (id),
    token_sha256 TEXT    NOT NULL UNIQUE,
    label        TEXT    NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked      INTEGER NOT NULL DEFAULT 0
);
