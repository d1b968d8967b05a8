-- Sign-in policies ("login management"), the login log, and LDAP service accounts.

-- A rule: who x where x when x which client -> allow or deny. The first rule (by position)
-- that matches decides; `sign_in_policy.default_allow` decides the rest.
CREATE TABLE sign_in_rules (
    id UUID PRIMARY KEY,
    position BIGINT NOT NULL,
    allow BOOLEAN NOT NULL,
    -- enterprise | unit | group | member
    who_kind TEXT NOT NULL,
    who_id UUID,
    -- JSON arrays: CIDRs, weekly windows, dated exceptions, clients.
    networks TEXT NOT NULL,
    windows TEXT NOT NULL,
    exceptions TEXT NOT NULL,
    clients TEXT NOT NULL,
    time_zone TEXT NOT NULL,
    note TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX sign_in_rules_position ON sign_in_rules (position);

CREATE TABLE sign_in_policy (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    default_allow BOOLEAN NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
INSERT INTO sign_in_policy (singleton, default_allow, updated_at) VALUES (1, TRUE, '1970-01-01T00:00:00Z'::timestamptz);

-- Every sign-in attempt: console, LDAP bind, sign-in API.
CREATE TABLE login_log (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL,
    member_id UUID,
    typed TEXT NOT NULL,
    -- console | ldap | api
    client TEXT NOT NULL,
    -- the LDAP service account or sign-in token's name, and the client kind the API was told
    app TEXT NOT NULL,
    ip TEXT,
    outcome TEXT NOT NULL,
    rule_id UUID,
    reason TEXT NOT NULL,
    -- `/unit/.../unit/`: the member's primary unit and its ancestors, root first, at the time
    unit_path TEXT NOT NULL
);
CREATE INDEX login_log_at ON login_log (at);
CREATE INDEX login_log_member ON login_log (member_id, at);

-- LDAP service accounts are API tokens of kind `ldap`; each may read the whole tree or one
-- subtree, with its own size and time limits.
ALTER TABLE api_tokens ADD COLUMN scope_unit_id UUID;
ALTER TABLE api_tokens ADD COLUMN size_limit BIGINT;
ALTER TABLE api_tokens ADD COLUMN time_limit_secs BIGINT;
