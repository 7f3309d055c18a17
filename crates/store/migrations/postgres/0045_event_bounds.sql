-- What a run's events take in the database, so a per-run bound holds across workers, and each
-- event's message stored once.
-- The SQLite migration 0045 mirrors this file column for column.

-- Bytes of events the run stored (messages, data as stored, and rows: EVENT_ROW_BYTES each),
-- kept by append_events.
ALTER TABLE runs ADD COLUMN event_bytes BIGINT NOT NULL DEFAULT 0;

-- The key of `data` whose value is the event's message (an output line, an agent's text): left
-- out of the stored data and put back on reading, so the text is stored once. NULL: none.
ALTER TABLE run_events ADD COLUMN message_key TEXT;
