-- Every phone number a source sends, besides the mobile (which SMS go to): value, type, primary,
-- in order. The members' sync digests cover them only when there are some, so the stored digests
-- (of members without any) stay valid.
CREATE TABLE member_phones (
    member_id BLOB NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    number TEXT NOT NULL,
    kind TEXT NOT NULL,
    is_primary BOOLEAN NOT NULL,
    position BIGINT NOT NULL
);
CREATE INDEX member_phones_member ON member_phones (member_id);
