-- +goose Up
-- Tables live in the service's schema (the search_path set by database.MigratePostgres). The *_key
-- columns hold the lowercased value that uniqueness and search compare, computed by the store in Go so
-- that PostgreSQL and SQLite fold case identically whatever the database's locale.
-- COLLATE "C" on id makes keyset pagination follow byte order, whatever the database's default collation.
CREATE TABLE users (
    id               text COLLATE "C" NOT NULL PRIMARY KEY,
    email            text        NOT NULL,
    email_key        text        NOT NULL,
    username         text        NOT NULL DEFAULT '',
    -- NULL when the user has no username: UNIQUE ignores NULLs.
    username_key     text,
    display_name     text        NOT NULL DEFAULT '',
    display_name_key text        NOT NULL DEFAULT '',
    role             text        NOT NULL,
    status           text        NOT NULL,
    password_hash    text        NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    deleted_at       timestamptz,
    last_login_at    timestamptz,
    version          bigint      NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email_key),
    CONSTRAINT users_username_key UNIQUE (username_key)
);
CREATE INDEX users_status_id ON users (status, id);
CREATE INDEX users_role_id ON users (role, id);

CREATE TABLE refresh_tokens (
    hash       bytea       NOT NULL PRIMARY KEY,
    family_id  text        NOT NULL,
    user_id    text COLLATE "C" NOT NULL REFERENCES users (id),
    issued_at  timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    revoked_at timestamptz
);
CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_id ON refresh_tokens (user_id);

-- seq is drawn at insert time; writers serialize on a table lock (see the store) so that seq order is
-- also commit order, which the activity relay's "seq > cursor" feed relies on.
CREATE TABLE activity (
    seq            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id             text        NOT NULL,
    user_id        text COLLATE "C" NOT NULL REFERENCES users (id),
    type           text        NOT NULL,
    at             timestamptz NOT NULL,
    actor_user_id  text        NOT NULL DEFAULT '',
    -- A JSON array of field names.
    changed_fields text        NOT NULL DEFAULT '[]',
    CONSTRAINT activity_id_key UNIQUE (id)
);
CREATE INDEX activity_user_id ON activity (user_id, seq);

CREATE TABLE signing_keys (
    kid         text        NOT NULL PRIMARY KEY,
    private_key bytea       NOT NULL,
    public_key  bytea       NOT NULL,
    created_at  timestamptz NOT NULL,
    retire_at   timestamptz
);

-- +goose Down
DROP TABLE signing_keys;
DROP TABLE activity;
DROP TABLE refresh_tokens;
DROP TABLE users;
