-- The message record archive (owner: `archive`). Times of messages are microseconds since the
-- Unix epoch (compact, ordered, the same on both stores); parties are member identities (never
-- account numbers) or external addresses.
CREATE TABLE archive_groups (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    ext_id TEXT NOT NULL,
    name TEXT,
    owner_member BLOB,
    owner_external TEXT,
    kept BOOLEAN NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (source, ext_id)
);
CREATE TABLE archive_conversations (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    -- direct: the two parties, sorted ("m:<uuid>" or "x:<address>", joined by a space);
    -- group: "g:<archive_groups.id>".
    key TEXT NOT NULL,
    group_id INTEGER REFERENCES archive_groups (id),
    UNIQUE (source, key)
);
CREATE TABLE archive_messages (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    ext_id TEXT NOT NULL,
    conversation INTEGER NOT NULL REFERENCES archive_conversations (id),
    sender_member BLOB,
    sender_external TEXT,
    sent_at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    attachments TEXT NOT NULL,
    ingested_at INTEGER NOT NULL,
    UNIQUE (source, ext_id)
);
CREATE INDEX archive_messages_conversation ON archive_messages (conversation, sent_at, id);
CREATE INDEX archive_messages_time ON archive_messages (sent_at, id);
-- Which member identities a message belongs to: the sender, and the other party of a direct one.
-- One index keyed by member (a member's timeline; their conversations group it): every index
-- keyed by member takes a random page for each message stored.
CREATE TABLE archive_parties (
    member_id BLOB NOT NULL,
    conversation INTEGER NOT NULL,
    sent_at INTEGER NOT NULL,
    message INTEGER NOT NULL,
    PRIMARY KEY (member_id, sent_at, message)
) WITHOUT ROWID;
CREATE INDEX archive_parties_message ON archive_parties (message);
-- The search index: each message's folded unigrams and bigrams, hashed to ASCII tokens
-- (archive::grams), rowid = archive_messages.id. Only term presence is kept (detail=none).
CREATE VIRTUAL TABLE archive_text USING fts5 (
    grams, content = '', contentless_delete = 1, detail = 'none', tokenize = 'ascii'
);
-- Attachment bytes, content-addressed by SHA-256, kept in the database (backed up with it).
CREATE TABLE archive_blobs (
    sha256 TEXT PRIMARY KEY,
    mime TEXT NOT NULL,
    size INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE archive_exports (
    id BLOB PRIMARY KEY,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    scope TEXT NOT NULL,
    format TEXT NOT NULL,
    state TEXT NOT NULL,
    total INTEGER NOT NULL,
    done INTEGER NOT NULL,
    file TEXT,
    size INTEGER,
    sha256 TEXT,
    manifest TEXT,
    error TEXT,
    expires_at TEXT
);
CREATE TABLE archive_retention (
    unit_id BLOB PRIMARY KEY,
    days INTEGER NOT NULL,
    set_by TEXT NOT NULL,
    set_at TEXT NOT NULL
);
CREATE TABLE archive_holds (
    id BLOB PRIMARY KEY,
    target_kind TEXT NOT NULL,
    target_id BLOB NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    released_at TEXT
);
