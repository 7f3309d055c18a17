-- Taking a run over from another worker: whether it was handed back or its lease expired, and
-- the agent's finished work, so it is restored rather than done again.
-- The SQLite migration 0030 mirrors this file column for column.

-- 1 while the run's current claim took it from a worker that handed it back (a graceful
-- shutdown); 0 when the run was new or its previous worker's lease expired.
ALTER TABLE runs ADD COLUMN handed_over BIGINT NOT NULL DEFAULT 0;

-- The latest finished agent round of a running run as a binary patch against base_commit (new
-- files included); `validated` when its checks passed. In the database, not on a worker's disk,
-- so a worker on any machine can restore it. Deleted when the run ends.
CREATE TABLE run_snapshots (
    run_id       BIGINT PRIMARY KEY REFERENCES runs(id),
    round        BIGINT NOT NULL,
    validated    BIGINT NOT NULL,
    base_commit  TEXT   NOT NULL,
    patch        BYTEA  NOT NULL,
    created_at   BIGINT NOT NULL
);
