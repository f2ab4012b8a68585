-- +goose Up
-- Times are Unix microseconds (UTC), NULL when unset. The *_key columns hold the lowercased value that
-- uniqueness and search compare, computed by the store in Go (SQLite's lower() folds ASCII only).
CREATE TABLE users (
    id               TEXT    NOT NULL PRIMARY KEY,
    email            TEXT    NOT NULL,
    email_key        TEXT    NOT NULL,
    username         TEXT    NOT NULL DEFAULT '',
    -- NULL when the user has no username: UNIQUE ignores NULLs.
    username_key     TEXT,
    display_name     TEXT    NOT NULL DEFAULT '',
    display_name_key TEXT    NOT NULL DEFAULT '',
    role             TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    password_hash    TEXT    NOT NULL DEFAULT '',
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    deleted_at       INTEGER,
    last_login_at    INTEGER,
    version          INTEGER NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email_key),
    CONSTRAINT users_username_key UNIQUE (username_key)
);
CREATE INDEX users_status_id ON users (status, id);
CREATE INDEX users_role_id ON users (role, id);

CREATE TABLE refresh_tokens (
    hash       BLOB    NOT NULL PRIMARY KEY,
    family_id  TEXT    NOT NULL,
    user_id    TEXT    NOT NULL REFERENCES users (id),
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    revoked_at INTEGER
);
CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_id ON refresh_tokens (user_id);

-- AUTOINCREMENT never reuses a seq, and SQLite's single writer makes seq order commit order, which
-- the activity relay's "seq > cursor" feed relies on.
CREATE TABLE activity (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT    NOT NULL UNIQUE,
    user_id        TEXT    NOT NULL REFERENCES users (id),
    type           TEXT    NOT NULL,
    at             INTEGER NOT NULL,
    actor_user_id  TEXT    NOT NULL DEFAULT '',
    -- A JSON array of field names.
    changed_fields TEXT    NOT NULL DEFAULT '[]'
);
CREATE INDEX activity_user_id ON activity (user_id, seq);

CREATE TABLE signing_keys (
    kid         TEXT    NOT NULL PRIMARY KEY,
    private_key BLOB    NOT NULL,
    public_key  BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    retire_at   INTEGER
);

-- +goose Down
DROP TABLE signing_keys;
DROP TABLE activity;
DROP TABLE refresh_tokens;
DROP TABLE users;
