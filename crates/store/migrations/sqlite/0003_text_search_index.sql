-- Free-text search without reading every task: an FTS5 trigram index over `search_text`
-- answers substring LIKE queries of three or more characters. The store uses it as a
-- prefilter and keeps the exact LIKE on `tasks.search_text` (see tasks.rs).
CREATE VIRTUAL TABLE tasks_search USING fts5(
    search_text, content = 'tasks', content_rowid = 'id', tokenize = 'trigram'
);
CREATE TRIGGER tasks_search_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO tasks_search (rowid, search_text) VALUES (new.id, new.search_text);
END;
CREATE TRIGGER tasks_search_delete AFTER DELETE ON tasks BEGIN
    INSERT INTO tasks_search (tasks_search, rowid, search_text) VALUES ('delete', old.id, old.search_text);
END;
CREATE TRIGGER tasks_search_update AFTER UPDATE OF search_text ON tasks BEGIN
    INSERT INTO tasks_search (tasks_search, rowid, search_text) VALUES ('delete', old.id, old.search_text);
    INSERT INTO tasks_search (rowid, search_text) VALUES (new.id, new.search_text);
END;
INSERT INTO tasks_search (tasks_search) VALUES ('rebuild');
