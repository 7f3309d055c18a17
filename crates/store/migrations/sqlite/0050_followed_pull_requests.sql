-- Pull requests runs published, followed after the run until merged or closed (or until
-- follow_until): each poll is claimed under a lease, as runs are, so one node asks at a time
-- and a restart forgets nothing.
-- The PostgreSQL migration 0050 mirrors this file column for column.

CREATE TABLE followed_pull_requests (
    id                INTEGER PRIMARY KEY,
    project_id        BIGINT  NOT NULL REFERENCES projects(id),
    task_id           BIGINT  NOT NULL REFERENCES tasks(id),
    -- The run that last pushed to it: a follow-up run of the task takes it over.
    run_id            BIGINT  NOT NULL REFERENCES runs(id),
    repo              TEXT    NOT NULL,
    number            BIGINT  NOT NULL,
    url               TEXT    NOT NULL,
    branch            TEXT    NOT NULL,
    state             TEXT    NOT NULL,
    ci                TEXT    NOT NULL,
    mergeable         TEXT    NOT NULL,
    behind_base       BIGINT,
    head_sha          TEXT,
    -- The ETags of the last poll with what each answer meant (JSON), for conditional requests.
    validators        TEXT,
    opened_at         BIGINT  NOT NULL,
    changed_at        BIGINT  NOT NULL,
    ended_at          BIGINT,
    follow_until      BIGINT  NOT NULL,
    following         BIGINT  NOT NULL DEFAULT 1,
    next_poll_at      BIGINT  NOT NULL,
    polls             BIGINT  NOT NULL DEFAULT 0,
    unchanged_polls   BIGINT  NOT NULL DEFAULT 0,
    last_polled_at    BIGINT,
    last_error        TEXT,
    failures          BIGINT  NOT NULL DEFAULT 0,
    lease_owner       TEXT,
    lease_expires_at  BIGINT,
    UNIQUE (project_id, repo, number)
);
CREATE INDEX followed_pull_requests_due ON followed_pull_requests (following, next_poll_at);
CREATE INDEX followed_pull_requests_by_task ON followed_pull_requests (task_id);

-- What a follow-up run on the task's open pull request was started to do (JSON); NULL for a
-- first run or a retry.
ALTER TABLE runs ADD COLUMN follow_up TEXT;

-- Outcome insights count a project's ended runs and its pull requests by time.
CREATE INDEX runs_by_project_ended ON runs (project_id, ended_at);
CREATE INDEX followed_pull_requests_by_opened ON followed_pull_requests (project_id, opened_at);
CREATE INDEX followed_pull_requests_by_ended ON followed_pull_requests (project_id, ended_at);
