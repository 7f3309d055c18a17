-- Templates (versioned), which template version a task came from, and in-app notifications.
-- The PostgreSQL migration 0020 mirrors this file column for column.

CREATE TABLE templates (
    id              INTEGER PRIMARY KEY,
    project_id      BIGINT  NOT NULL REFERENCES projects(id),
    name            TEXT    NOT NULL,
    latest_version  BIGINT  NOT NULL,
    created_by      TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    UNIQUE (project_id, name)
);

-- Every edit is a new row: tasks keep pointing at the exact version they rendered.
CREATE TABLE template_versions (
    template_id  BIGINT  NOT NULL REFERENCES templates(id),
    version      BIGINT  NOT NULL,
    -- The TemplateSpec as JSON (description, instructions, parameters, agent, checks, budget, timeout).
    spec         TEXT    NOT NULL,
    created_by   TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    PRIMARY KEY (template_id, version)
);

ALTER TABLE tasks ADD COLUMN template_id BIGINT REFERENCES templates(id);
ALTER TABLE tasks ADD COLUMN template_version BIGINT;
-- The validated parameter values as a JSON object of strings.
ALTER TABLE tasks ADD COLUMN template_params TEXT;
CREATE INDEX tasks_by_template ON tasks (template_id, id DESC);

CREATE TABLE notifications (
    id          INTEGER PRIMARY KEY,
    project_id  BIGINT  NOT NULL REFERENCES projects(id),
    user_name   TEXT    NOT NULL,
    task_id     BIGINT  NOT NULL REFERENCES tasks(id),
    run_id      BIGINT  NOT NULL REFERENCES runs(id),
    -- succeeded | failed | pr_opened
    kind        TEXT    NOT NULL,
    message     TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    read_at     BIGINT,
    UNIQUE (run_id, kind)
);
CREATE INDEX notifications_by_user ON notifications (project_id, user_name, id DESC);
