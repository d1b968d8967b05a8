-- API tokens have a kind: `scim` (an identity provider's client; its source is scim:<name>),
-- `archive` (an IM server posting message records; its source is im:<name>) or `archive-read`
-- (a compliance tool reading the archive). Every token so far is a SCIM client's.
ALTER TABLE api_tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'scim';
