-- Delivery: outbox events become messages (one per channel and recipient), dispatched with a
-- lease, retried with backoff, parked as dead after the last attempt. The SMS account keeps the
-- company's balance and a ledger of every charge and top-up.
-- Kept column-for-column in step with ../postgres/20261125000005_delivery.sql.

CREATE TABLE deliveries (
    id BLOB PRIMARY KEY,
    created_at TEXT NOT NULL,
    event_id BLOB,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    recipient TEXT NOT NULL,
    member_id BLOB,
    params TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    lease_holder TEXT,
    lease_until TEXT,
    last_error TEXT,
    provider_id TEXT,
    sent_at TEXT,
    reserved BIGINT NOT NULL DEFAULT 0,
    broadcast_id BLOB,
    CONSTRAINT deliveries_idempotency_key UNIQUE (idempotency_key)
);
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at);
CREATE INDEX deliveries_broadcast ON deliveries (broadcast_id, channel, state);

-- A message from an admin to everybody or to org subtrees; its messages are deliveries.
CREATE TABLE broadcasts (
    id BLOB PRIMARY KEY,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    sms BOOLEAN NOT NULL,
    scope TEXT NOT NULL,
    recipients BIGINT NOT NULL
);

CREATE TABLE sms_account (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    balance BIGINT NOT NULL,
    low_warned_at TEXT
);
INSERT INTO sms_account (singleton, balance) VALUES (1, 0);

CREATE TABLE sms_ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    entry TEXT NOT NULL,
    amount BIGINT NOT NULL,
    balance_after BIGINT NOT NULL,
    delivery_id BLOB,
    recipient TEXT,
    segments BIGINT,
    provider_id TEXT,
    actor TEXT NOT NULL,
    note TEXT
);

-- Each member's company mailbox as the mail system should have it, and whether it does.
CREATE TABLE mailbox_bindings (
    member_id BLOB PRIMARY KEY,
    address TEXT NOT NULL,
    display_name TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    lease_holder TEXT,
    lease_until TEXT,
    last_error TEXT,
    remote_id TEXT,
    pushed_at TEXT,
    updated_at TEXT NOT NULL
);
CREATE INDEX mailbox_bindings_due ON mailbox_bindings (state, next_attempt_at);
