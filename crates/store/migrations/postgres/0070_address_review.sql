-- Address-review runs: how far a pull request's review comments went to a run, the last
-- `/nightshift` comment handled (so a command starts at most one run, across restarts and
-- repeated polls) and why it started none; and whether a project takes comment commands.
-- The SQLite migration 0070 mirrors this file column for column.

ALTER TABLE followed_pull_requests ADD COLUMN review_until BIGINT;
ALTER TABLE followed_pull_requests ADD COLUMN last_command_at BIGINT;
ALTER TABLE followed_pull_requests ADD COLUMN last_command_id BIGINT;
ALTER TABLE followed_pull_requests ADD COLUMN command_note TEXT;
ALTER TABLE projects ADD COLUMN comment_commands BIGINT NOT NULL DEFAULT 0;
