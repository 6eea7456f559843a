-- The peers this authority trusts (PROTOCOL B.1): configured by an
-- administrator, recognised by the SHA-256 of their public key alone.
CREATE TABLE peers (
    server_id   TEXT    NOT NULL PRIMARY KEY,
    -- https://host[:port][/path], no query, fragment or trailing slash; the
    -- endpoint is this followed by /dm-delegation.
    url         TEXT    NOT NULL,
    -- Where devices reach the peer's DM endpoint (AppAddr when it is DMS-2).
    dm_url      TEXT    NOT NULL,
    -- SHA-256 of the peer's SubjectPublicKeyInfo, 64 lowercase hex digits;
    -- one key belongs to one peer, so a presented key names its ServerID.
    fingerprint TEXT    NOT NULL UNIQUE,
    -- Auto-accept policy (JSON), none by default.
    auto_accept TEXT,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);
