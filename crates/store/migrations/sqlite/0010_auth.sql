-- Projects, people and policies: users and their API tokens, browser sessions, project members
-- and group bindings, per-project limits, the audit trail and the credentials vault.
-- The PostgreSQL migration mirrors this file column for column.

CREATE TABLE users (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    email        TEXT,
    -- A server admin may create users and sees every project; project roles are separate.
    server_admin BIGINT  NOT NULL DEFAULT 0,
    created_at   BIGINT  NOT NULL
);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    user_id      BIGINT  NOT NULL REFERENCES users(id),
    name         TEXT    NOT NULL,
    -- sha256 of the token, hex; the token itself is shown once and never stored.
    token_hash   TEXT    NOT NULL UNIQUE,
    prefix       TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX api_tokens_by_user ON api_tokens (user_id, id);

CREATE TABLE sessions (
    id_hash     TEXT    PRIMARY KEY,
    user_id     BIGINT  NOT NULL REFERENCES users(id),
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL
);

CREATE TABLE members (
    project_id  BIGINT  NOT NULL REFERENCES projects(id),
    user_id     BIGINT  NOT NULL REFERENCES users(id),
    role        TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX members_by_user ON members (user_id);

CREATE TABLE group_bindings (
    project_id  BIGINT  NOT NULL REFERENCES projects(id),
    group_name  TEXT    NOT NULL,
    role        TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (project_id, group_name)
);

-- Limits per project; NULL means the server's default applies.
ALTER TABLE projects ADD COLUMN max_active_runs_per_user BIGINT NOT NULL DEFAULT 1;
ALTER TABLE projects ADD COLUMN max_timeout_secs BIGINT;
ALTER TABLE projects ADD COLUMN monthly_budget_usd DOUBLE PRECISION;

CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY,
    -- NULL for events outside any project (tokens, sign-in, forged headers).
    project_id  BIGINT,
    at          BIGINT  NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    object      TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    detail      TEXT
);
CREATE INDEX audit_by_project ON audit_events (project_id, id DESC);
CREATE INDEX audit_by_at ON audit_events (at);

CREATE TABLE credentials (
    id          INTEGER PRIMARY KEY,
    project_id  BIGINT  NOT NULL REFERENCES projects(id),
    host        TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    -- base64 of nonce || AEAD ciphertext; the plaintext never touches the database.
    sealed      TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    set_by      TEXT    NOT NULL,
    updated_at  BIGINT  NOT NULL,
    UNIQUE (project_id, host)
);

-- Claiming checks for a running run on the same repository and branch and for a user's
-- active runs; history filters by run status and time.
CREATE INDEX tasks_by_repo_base ON tasks (repo, base_branch);
CREATE INDEX runs_by_task ON runs (task_id, number);
CREATE INDEX runs_by_project_created ON runs (project_id, created_at);
CREATE INDEX run_events_by_at ON run_events (at);
