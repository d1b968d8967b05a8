-- The scheduler's leader leases: each scheduled job (a sync schedule, delivery dispatch, mailbox
-- push, purges) runs on the node that holds its lease; a node that dies stops renewing it, and
-- another node takes the job over once the lease has expired.
CREATE TABLE job_leases (
    job TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    -- The due time the job last ran for (a new holder runs a due time the old one missed).
    last_due TEXT
);
