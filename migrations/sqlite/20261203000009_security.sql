-- Security fixes (issue 13).
-- Who last set a member's console password: a provisioning source (`scim:<name>`, `import`),
-- `console:<who>`, or `self` (see README, "Passwords and provisioning").
ALTER TABLE members ADD COLUMN password_set_by TEXT;
-- Until now a member's own source could set their password, role or not: an admin whose password
-- a SCIM client or an import chose loses it (the super admin sets a new one; LDAP members sign in
-- through their directory and keep no password here).
UPDATE members SET password_hash = NULL
WHERE password_hash IS NOT NULL AND source <> 'console'
  AND id IN (SELECT member_id FROM role_grants);
-- The others are credited to the member's source; `console` alone means "someone in the
-- console": such a password does not survive the member's first role.
UPDATE members SET password_set_by = source WHERE password_hash IS NOT NULL;
-- A token's secret replaced in place (`rosterd token rotate`): the name, and so the source, stays.
ALTER TABLE api_tokens ADD COLUMN rotated_at TEXT;
-- A token name is the identity of a source (`scim:<name>`) and is never handed out again, revoked
-- or not. Rows from before, where a name was revoked and created again, keep the newest row under
-- the name; older revoked ones are renamed `<name>~<id>` (not a valid name: never created again).
UPDATE api_tokens SET name = name || '~' || CAST(id AS TEXT)
WHERE revoked_at IS NOT NULL
  AND EXISTS (SELECT 1 FROM api_tokens newer WHERE newer.name = api_tokens.name AND newer.id > api_tokens.id);
DROP INDEX api_tokens_live_name;
CREATE UNIQUE INDEX api_tokens_name ON api_tokens (name);
