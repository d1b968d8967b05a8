-- The admin console: roles (named sets of permissions) granted to members, optionally scoped to
-- an org subtree; console sessions; sign-in failures for the rate limit and lockout.
-- Kept column-for-column in step with ../sqlite/20261125000006_admin.sql.

CREATE TABLE roles (
    id UUID PRIMARY KEY,
    name TEXT NOT NULL,
    -- Permission names, comma-separated, sorted.
    permissions TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT roles_name UNIQUE (name)
);

CREATE TABLE role_grants (
    role_id UUID NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    member_id UUID NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    -- NULL: the whole directory; else the subtree under this unit.
    scope_unit_id UUID REFERENCES org_units (id),
    granted_at TIMESTAMPTZ NOT NULL,
    granted_by TEXT NOT NULL,
    PRIMARY KEY (role_id, member_id)
);
CREATE INDEX role_grants_member ON role_grants (member_id);
CREATE INDEX role_grants_scope ON role_grants (scope_unit_id);

CREATE TABLE admin_sessions (
    -- SHA-256 of the cookie's secret; the secret itself is never stored.
    id_hash TEXT PRIMARY KEY,
    -- NULL for the super admin.
    member_id UUID REFERENCES members (id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL,
    ip TEXT NOT NULL
);
CREATE INDEX admin_sessions_expires ON admin_sessions (expires_at);

-- Failed sign-ins per key (`login:<name>`, `ip:<address>`) inside the current window.
CREATE TABLE sign_in_failures (
    key TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    locked_until TIMESTAMPTZ
);

-- The first steps of each sync run's plan, for the console (a held run shows what it would do).
ALTER TABLE sync_runs ADD COLUMN plan JSONB NOT NULL DEFAULT '[]';

-- A unit's members in account-number order (the console's org page) without sorting the unit.
DROP INDEX members_primary_org_unit;
CREATE INDEX members_primary_org_unit ON members (primary_org_unit_id, account_number);
