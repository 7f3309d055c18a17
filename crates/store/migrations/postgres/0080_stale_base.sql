-- What the follower does by itself with a project's open pull requests: rebase them when their
-- base moved on ('off', 'conflicts' or 'behind'), and start fix-CI runs when their CI fails (at
-- most this many per pull request; 0 leaves it to people).
-- The SQLite migration 0080 mirrors this file column for column.

ALTER TABLE projects ADD COLUMN rebase TEXT NOT NULL DEFAULT 'conflicts';
ALTER TABLE projects ADD COLUMN auto_fix_ci_attempts BIGINT NOT NULL DEFAULT 0;
