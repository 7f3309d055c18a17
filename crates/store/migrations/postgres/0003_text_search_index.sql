-- Free-text search without reading every task: a pg_trgm GIN index answers substring LIKE
-- queries of three or more characters. pg_trgm ships with PostgreSQL and is a trusted
-- extension, but a server without it (or a role that may not create it) still works: the
-- search is then a scan, as on any database without the index.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE INDEX tasks_search_trgm ON tasks USING gin (search_text gin_trgm_ops);
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm unavailable (%), task text search will scan', SQLERRM;
END
$$;
