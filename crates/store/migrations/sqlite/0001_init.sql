-- Times are milliseconds since the Unix epoch; flags are 0/1 integers; JSON is stored as text.
-- The PostgreSQL migrations mirror this file column for column.

CREATE TABLE projects (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    settings    TEXT    NOT NULL DEFAULT '{}',
    created_at  BIGINT  NOT NULL
);

CREATE TABLE tasks (
    id            INTEGER PRIMARY KEY,
    project_id    BIGINT  NOT NULL REFERENCES projects(id),
    title         TEXT    NOT NULL,
    instructions  TEXT    NOT NULL,
    repo          TEXT    NOT NULL,
    base_branch   TEXT    NOT NULL,
    agent         TEXT    NOT NULL,
    timeout_secs  BIGINT  NOT NULL,
    budget        TEXT    NOT NULL,
    created_by    TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    -- The latest run's state, kept here so lists and filters need no join.
    latest_run_id BIGINT,
    status        TEXT    NOT NULL,
    end_reason    TEXT
);
CREATE INDEX tasks_by_project ON tasks (project_id, id DESC);
CREATE INDEX tasks_by_repo ON tasks (project_id, repo, id DESC);
CREATE INDEX tasks_by_status ON tasks (project_id, status, id DESC);
CREATE INDEX tasks_by_creator ON tasks (project_id, created_by, id DESC);

CREATE TABLE runs (
    id               INTEGER PRIMARY KEY,
    project_id       BIGINT  NOT NULL REFERENCES projects(id),
    task_id          BIGINT  NOT NULL REFERENCES tasks(id),
    number           BIGINT  NOT NULL,
    status           TEXT    NOT NULL,
    phase            TEXT,
    progress         BIGINT  NOT NULL DEFAULT 0,
    end_reason       TEXT,
    failed_phase     TEXT,
    error            TEXT,
    waiting_reason   TEXT,
    checkpoint       TEXT    NOT NULL DEFAULT '{}',
    input_tokens     BIGINT  NOT NULL DEFAULT 0,
    output_tokens    BIGINT  NOT NULL DEFAULT 0,
    cost_usd         DOUBLE PRECISION NOT NULL DEFAULT 0,
    turns            BIGINT  NOT NULL DEFAULT 0,
    cancel_requested BIGINT  NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    event_seq        BIGINT  NOT NULL DEFAULT 0,
    -- How many times a worker took the run; above 1 means it was handed over and resumed.
    claims           BIGINT  NOT NULL DEFAULT 0,
    created_at       BIGINT  NOT NULL,
    started_at       BIGINT,
    ended_at         BIGINT,
    UNIQUE (task_id, number)
);
CREATE INDEX runs_by_status ON runs (status, id);

CREATE TABLE run_events (
    run_id   BIGINT NOT NULL REFERENCES runs(id),
    seq      BIGINT NOT NULL,
    at       BIGINT NOT NULL,
    kind     TEXT   NOT NULL,
    phase    TEXT,
    message  TEXT   NOT NULL,
    data     TEXT,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE generated_changes (
    run_id      BIGINT PRIMARY KEY REFERENCES runs(id),
    data        TEXT   NOT NULL,
    updated_at  BIGINT NOT NULL
);
