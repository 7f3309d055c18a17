-- A browser session lives only as long as the API token it was opened with: revoking the token
-- ends its sessions. Sessions from before this link cannot be tied to a token and are ended.
-- The other backend's migration 0035 mirrors this file.

DELETE FROM sessions;
ALTER TABLE sessions ADD COLUMN token_id BIGINT REFERENCES api_tokens(id);
CREATE INDEX sessions_by_token ON sessions (token_id);
