-- Devices, their DM sessions, the command queue, notifications, API tokens.
CREATE TABLE devices (
    id                BIGSERIAL PRIMARY KEY,
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
    created_at        BIGINT  NOT NULL,
    first_seen        BIGINT,
    last_seen         BIGINT
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
    messages   BIGINT  NOT NULL DEFAULT 0,
    started_at BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL,
    ended      BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (devid, session_id)
);
CREATE INDEX dm_sessions_updated ON dm_sessions (ended, updated_at);

CREATE TABLE session_history (
    id         BIGSERIAL PRIMARY KEY,
    devid      TEXT    NOT NULL,
    session_id TEXT    NOT NULL,
    started_at BIGINT  NOT NULL,
    ended_at   BIGINT  NOT NULL,
    -- completed | auth-failed | aborted | expired | error
    outcome    TEXT    NOT NULL,
    messages   BIGINT  NOT NULL,
    commands   BIGINT  NOT NULL,
    source     TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX session_history_devid ON session_history (devid, id);

CREATE TABLE jobs (
    id           BIGSERIAL PRIMARY KEY,
    devid        TEXT    NOT NULL,
    -- The command as JSON (Get, Replace, Add, Delete, Exec, Copy, Atomic, Sequence).
    command      TEXT    NOT NULL,
    -- queued | sent | succeeded | failed
    state        TEXT    NOT NULL DEFAULT 'queued',
    status       BIGINT,
    results      TEXT,
    error        TEXT    NOT NULL DEFAULT '',
    session_id   TEXT    NOT NULL DEFAULT '',
    requested_by TEXT    NOT NULL DEFAULT '',
    notify       BIGINT  NOT NULL DEFAULT 0,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);
CREATE INDEX jobs_devid_state ON jobs (devid, state, id);

CREATE TABLE notification_outbox (
    id           BIGSERIAL PRIMARY KEY,
    devid        TEXT    NOT NULL,
    -- http (pushed by the server) | gateway (picked up by an SMS/WAP gateway)
    transport    TEXT    NOT NULL,
    address      TEXT    NOT NULL,
    -- package 0, base64
    payload      TEXT    NOT NULL,
    -- pending | sent | failed
    state        TEXT    NOT NULL DEFAULT 'pending',
    attempts     BIGINT  NOT NULL DEFAULT 0,
    error        TEXT    NOT NULL DEFAULT '',
    created_at   BIGINT  NOT NULL,
    sent_at      BIGINT
);
CREATE INDEX notification_outbox_state ON notification_outbox (state, id);

CREATE TABLE api_tokens (
    id           BIGSERIAL PRIMARY KEY,
    user_id      BIGINT  NOT NULL REFERENCES users (id),
    token_sha256 TEXT    NOT NULL UNIQUE,
    label        TEXT    NOT NULL DEFAULT '',
    created_at   BIGINT  NOT NULL,
    last_used_at BIGINT,
    revoked      BIGINT  NOT NULL DEFAULT 0
);
