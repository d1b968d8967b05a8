-- Security fixes (issue 13).
-- Who last set a member's console password: the source (`console`, `scim:<name>`, `import`...).
-- A role is never granted on top of a password a provisioning source chose (see README,
-- "Passwords and provisioning"). Existing passwords are credited to the member's source, the
-- careful guess: a password set in the console on a SCIM member is cleared, not kept, at its
-- next grant.
ALTER TABLE members ADD COLUMN password_set_by TEXT;
UPDATE members SET password_set_by = source WHERE password_hash IS NOT NULL;
-- A token's secret replaced in place (`rosterd token rotate`): the name, and so the source, stays.
ALTER TABLE api_tokens ADD COLUMN rotated_at TIMESTAMPTZ;
-- A token name is the identity of a source (`scim:<name>`) and is never handed out again, revoked
-- or not. Rows from before, where a name was revoked and created again, keep the newest row under
-- the name; older revoked ones are renamed `<name>~<id>` (not a valid name: never created again).
UPDATE api_tokens SET name = name || '~' || CAST(id AS TEXT)
WHERE revoked_at IS NOT NULL
  AND EXISTS (SELECT 1 FROM api_tokens newer WHERE newer.name = api_tokens.name AND newer.id > api_tokens.id);
DROP INDEX api_tokens_live_name;
CREATE UNIQUE INDEX api_tokens_name ON api_tokens (name);
