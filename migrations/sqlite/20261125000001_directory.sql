-- Directory core: enterprise, org tree, members, groups, numbers, audit log, outbox, API tokens.
-- Kept column-for-column in step with ../postgres/20261125000001_directory.sql; unique
-- constraints carry the same names there (the store maps them to errors by name).
-- Ids are UUIDs stored as 16-byte BLOBs; timestamps are UTC text written by sqlx.

CREATE TABLE enterprise (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    enterprise_id TEXT NOT NULL,
    name TEXT NOT NULL,
    logo_url TEXT,
    address TEXT,
    contact_name TEXT,
    contact_phone TEXT,
    contact_email TEXT,
    mail_domain TEXT NOT NULL,
    expires_at TEXT,
    super_password_hash TEXT NOT NULL,
    password_must_change BOOLEAN NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE org_units (
    id BLOB PRIMARY KEY,
    parent_id BLOB REFERENCES org_units (id),
    name TEXT NOT NULL,
    position BIGINT NOT NULL,
    source TEXT NOT NULL,
    anchor TEXT,
    version BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    CONSTRAINT org_units_parent_id_name UNIQUE (parent_id, name),
    CONSTRAINT org_units_source_anchor UNIQUE (source, anchor)
);
CREATE UNIQUE INDEX org_units_root_name ON org_units (name) WHERE parent_id IS NULL;
CREATE INDEX org_units_parent_position ON org_units (parent_id, position);

CREATE TABLE members (
    id BLOB PRIMARY KEY,
    account_number BIGINT NOT NULL,
    login_name TEXT NOT NULL,
    display_name TEXT NOT NULL,
    given_name TEXT,
    family_name TEXT,
    mobile TEXT,
    title TEXT,
    employee_number TEXT,
    primary_org_unit_id BLOB REFERENCES org_units (id),
    manager_id BLOB REFERENCES members (id),
    state TEXT NOT NULL CHECK (state IN ('active', 'suspended')),
    password_hash TEXT,
    source TEXT NOT NULL,
    anchor TEXT,
    version BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    CONSTRAINT members_account_number UNIQUE (account_number),
    CONSTRAINT members_login_name UNIQUE (login_name),
    CONSTRAINT members_mobile UNIQUE (mobile),
    CONSTRAINT members_source_anchor UNIQUE (source, anchor)
);
CREATE INDEX members_primary_org_unit ON members (primary_org_unit_id);
CREATE INDEX members_manager ON members (manager_id);

CREATE TABLE member_emails (
    member_id BLOB NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    address TEXT NOT NULL,
    kind TEXT NOT NULL,
    is_primary BOOLEAN NOT NULL,
    position BIGINT NOT NULL,
    CONSTRAINT member_emails_address UNIQUE (address)
);
CREATE INDEX member_emails_member ON member_emails (member_id);

CREATE TABLE member_org_units (
    member_id BLOB NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    org_unit_id BLOB NOT NULL REFERENCES org_units (id),
    PRIMARY KEY (member_id, org_unit_id)
);
CREATE INDEX member_org_units_unit ON member_org_units (org_unit_id);

CREATE TABLE tombstones (
    member_id BLOB PRIMARY KEY,
    account_number BIGINT NOT NULL,
    login_name TEXT NOT NULL,
    profile TEXT NOT NULL,
    deleted_at TEXT NOT NULL,
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    deleted_by TEXT NOT NULL
);
CREATE INDEX tombstones_account_number ON tombstones (account_number);

CREATE TABLE groups (
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    owner_id BLOB REFERENCES members (id),
    source TEXT NOT NULL,
    anchor TEXT,
    version BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    CONSTRAINT groups_source_anchor UNIQUE (source, anchor)
);

CREATE TABLE group_members (
    group_id BLOB NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    member_id BLOB NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, member_id)
);
CREATE INDEX group_members_member ON group_members (member_id);

-- The highest account number ever issued; one row, locked by the UPDATE that advances it.
CREATE TABLE number_counter (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    high_water BIGINT NOT NULL
);
INSERT INTO number_counter (singleton, high_water) VALUES (1, 0);

CREATE TABLE number_reservations (
    number BIGINT PRIMARY KEY,
    note TEXT NOT NULL,
    reserved_at TEXT NOT NULL,
    reserved_by TEXT NOT NULL
);

-- Released numbers in quarantine.
CREATE TABLE number_releases (
    number BIGINT PRIMARY KEY,
    released_at TEXT NOT NULL
);
CREATE INDEX number_releases_released_at ON number_releases (released_at);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    source TEXT NOT NULL,
    action TEXT NOT NULL,
    object_kind TEXT NOT NULL,
    object_id TEXT,
    before TEXT,
    after TEXT
);
CREATE INDEX audit_log_object ON audit_log (object_kind, object_id);

CREATE TABLE outbox (
    id BLOB PRIMARY KEY,
    created_at TEXT NOT NULL,
    kind TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    CONSTRAINT outbox_idempotency_key UNIQUE (idempotency_key)
);
CREATE INDEX outbox_pending ON outbox (state, next_attempt_at);

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at TEXT,
    CONSTRAINT api_tokens_token_hash UNIQUE (token_hash)
);
-- One live token per name; revoked ones stay for the record.
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;
