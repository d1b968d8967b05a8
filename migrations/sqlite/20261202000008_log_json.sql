-- The twin of the PostgreSQL migration of the same name, which stores audit rows and outbox
-- payloads as json instead of jsonb. SQLite keeps both as TEXT already: nothing to change.
SELECT 1;
