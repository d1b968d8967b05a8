-- A digest of the fields an outside source (LDAP sync) sets on a member, written by the store
-- with every insert and update of the member (`Member::digest`). A full sync compares it with the
-- digest of what the source says and loads whole only the members whose digests differ. NULL
-- (rows from before this migration, or a manager removed by a delete) means "compare whole".
-- Kept column-for-column in step with the other backend's file of the same name.
ALTER TABLE members ADD COLUMN sync_digest BIGINT;
