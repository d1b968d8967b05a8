-- Office attendance: shifts, their assignment to org subtrees, punches, and day results.

CREATE TABLE attendance_shifts (
    id UUID PRIMARY KEY,
    -- The shift as written (access::attendance::ShiftSpec, JSON).
    spec TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

-- The nearest assignment up a member's primary unit's ancestors wins.
CREATE TABLE attendance_assignments (
    unit_id UUID PRIMARY KEY,
    shift_id UUID NOT NULL REFERENCES attendance_shifts (id)
);

-- Punches from clocks and apps: idempotent per (source, id).
CREATE TABLE attendance_punches (
    source TEXT NOT NULL,
    id TEXT NOT NULL,
    member_id UUID NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    device TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source, id)
);
CREATE INDEX attendance_punches_member ON attendance_punches (member_id, at);

-- A member's day (by member id, never account number); final rows are never replaced.
CREATE TABLE attendance_days (
    member_id UUID NOT NULL,
    day TEXT NOT NULL,
    shift_id UUID NOT NULL,
    status TEXT NOT NULL,
    first_at TIMESTAMPTZ,
    last_at TIMESTAMPTZ,
    late_minutes BIGINT NOT NULL,
    final BOOLEAN NOT NULL,
    PRIMARY KEY (member_id, day)
);
