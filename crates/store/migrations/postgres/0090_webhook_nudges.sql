-- When a forge's webhook delivery last asked for a followed pull request to be polled now. A
-- delivery that arrives while a poll is under way is remembered here, so the follower asks
-- again once that poll is recorded instead of waiting out the interval.
-- The SQLite migration 0090 mirrors this file column for column.

ALTER TABLE followed_pull_requests ADD COLUMN nudged_at BIGINT;
