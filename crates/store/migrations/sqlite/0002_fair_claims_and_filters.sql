-- Fair claiming across projects: when a worker last took the run; the newest per project is
-- when the project was last served (round-robin tie-break). Kept on runs, not on a project
-- row, so concurrent claimers do not queue on one hot row.
ALTER TABLE runs ADD COLUMN claimed_at BIGINT;
CREATE INDEX runs_by_project_claimed ON runs (project_id, claimed_at);

-- Claims look per project: the oldest queued run, the running ones (count, expired leases).
CREATE INDEX runs_by_project_status ON runs (project_id, status, id);
DROP INDEX runs_by_status;

-- Every task-list filter answers from an index ordered like the list (newest first).
CREATE INDEX tasks_by_end_reason ON tasks (project_id, end_reason, id DESC);
CREATE INDEX tasks_by_created_at ON tasks (project_id, created_at);

-- Free-text search reads one column, case-folded by the store (see tasks.rs: `search_text`).
-- Rows from before this migration are folded by SQLite's ASCII-only LOWER.
ALTER TABLE tasks ADD COLUMN search_text TEXT NOT NULL DEFAULT '';
UPDATE tasks SET search_text = LOWER(title) || char(31) || LOWER(instructions);
