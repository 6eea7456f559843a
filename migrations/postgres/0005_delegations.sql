-- Delegations this server takes part in (PROTOCOL Part B), the messages
-- exchanged with peers (the sent ones are the durable outbox, B.3), the
-- answers kept for repeated messages, batches of requests, and the device
-- jobs a delegation waits for.
CREATE TABLE delegation_batches (
    id           BIGSERIAL PRIMARY KEY,
    peer         TEXT    NOT NULL,
    created_by   TEXT    NOT NULL,
    reason       TEXT    NOT NULL DEFAULT '',
    created_at   BIGINT  NOT NULL
);

CREATE TABLE delegations (
    id            BIGSERIAL PRIMARY KEY,
    -- The other server's ServerID; with delegation_id the key of B.2.
    peer          TEXT    NOT NULL,
    delegation_id TEXT    NOT NULL,
    -- dms1 (delegating) | dms2 (delegated)
    role          TEXT    NOT NULL,
    initiator     BIGINT  NOT NULL,
    devid         TEXT    NOT NULL,
    batch_id      BIGINT  REFERENCES delegation_batches (id),
    -- full | partial; permanent | temporary
    kind          TEXT    NOT NULL,
    term          TEXT    NOT NULL,
    expires_at    BIGINT,
    -- JSON list of {uri, rights}
    scope         TEXT    NOT NULL DEFAULT '[]',
    reason        TEXT    NOT NULL DEFAULT '',
    requested_by  TEXT    NOT NULL DEFAULT '',
    approved_by   TEXT    NOT NULL DEFAULT '',
    -- The state machine's state name, for lists and filters.
    state         TEXT    NOT NULL,
    -- '' while running; completed | aborted | revoked | relinquished
    outcome       TEXT    NOT NULL DEFAULT '',
    -- The state machine itself, sealed: it holds one-time secrets.
    machine       TEXT    NOT NULL,
    -- When the machine must be woken (deadline or expiry), if ever.
    wake_at       BIGINT,
    -- The server's own progress on device work (accounts, stored ACL
    -- values, retries), sealed like the machine.
    work          TEXT    NOT NULL DEFAULT '',
    -- The device job the machine waits for, if any.
    job_id        BIGINT,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    ended_at      BIGINT,
    UNIQUE (peer, delegation_id)
);
CREATE INDEX delegations_devid ON delegations (devid, id);
CREATE INDEX delegations_state ON delegations (outcome, state, id);
CREATE INDEX delegations_wake ON delegations (wake_at);
CREATE INDEX delegations_job ON delegations (job_id);
CREATE INDEX delegations_batch ON delegations (batch_id, id);

CREATE TABLE delegation_messages (
    id              BIGSERIAL PRIMARY KEY,
    delegation      BIGINT  NOT NULL REFERENCES delegations (id),
    -- in | out
    direction       TEXT    NOT NULL,
    msg_type        TEXT    NOT NULL,
    msg_id          TEXT    NOT NULL,
    -- The exact document, sealed (a Start carries one-time secrets); erased
    -- to '' once it may no longer be resent.
    body            TEXT    NOT NULL,
    -- The answer's code; NULL while an outgoing message is unanswered.
    code            BIGINT,
    -- out: queued | delivered | dropped
    delivery        TEXT    NOT NULL DEFAULT '',
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    last_error      TEXT    NOT NULL DEFAULT '',
    created_at      BIGINT  NOT NULL,
    answered_at     BIGINT
);
CREATE INDEX delegation_messages_delegation ON delegation_messages (delegation, id);
CREATE INDEX delegation_messages_outbox ON delegation_messages (delivery, next_attempt_at);

-- B.3 idempotency: the answer to (Sender, MsgID), returned again for a repeat.
CREATE TABLE delegation_answers (
    sender     TEXT    NOT NULL,
    msg_id     TEXT    NOT NULL,
    code       BIGINT  NOT NULL,
    body       TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    PRIMARY KEY (sender, msg_id)
);
