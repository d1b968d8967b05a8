-- LDAP / AD sync: the record of every run, and the lease that keeps one run per source at a time.
CREATE TABLE sync_runs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source TEXT NOT NULL,
    trigger TEXT NOT NULL,
    full_read BOOLEAN NOT NULL,
    dry_run BOOLEAN NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    status TEXT NOT NULL,
    counts JSONB NOT NULL,
    errors JSONB NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX sync_runs_source ON sync_runs (source, id);

CREATE TABLE sync_leases (
    source TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

-- Where each source's incremental reads resume (RFC 4533 cookies), written in the same
-- transaction as the changes they produced.
CREATE TABLE sync_cursors (
    source TEXT PRIMARY KEY,
    cursor TEXT NOT NULL
);
