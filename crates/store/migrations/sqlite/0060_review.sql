-- Nightshift's own review of a change: whether a task may change its tests and checks (the
-- guard then lists its findings instead of sending them back), and whether a project's runs
-- are reviewed by the judge.
-- The PostgreSQL migration 0060 mirrors this file column for column.

ALTER TABLE tasks ADD COLUMN allow_test_changes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE projects ADD COLUMN judge BIGINT NOT NULL DEFAULT 1;
