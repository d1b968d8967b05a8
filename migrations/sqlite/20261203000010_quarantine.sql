-- Duplicate-attribute resiliency: a member's value (a mobile number, an e-mail address) that
-- another member already holds is kept aside here instead of refusing the member; the next write
-- from the member's source tries it again (README, "Conflicting values").
CREATE TABLE member_quarantine (
    member_id BLOB NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    source TEXT NOT NULL,
    since TEXT NOT NULL,
    PRIMARY KEY (member_id, field, value)
);
CREATE INDEX member_quarantine_source ON member_quarantine (source, since);
