-- Council sessions, votes and decisions; the programme's budget ledger; agreements, tranches
-- and the reports that release them.

CREATE TABLE council_sessions (
    id           uuid PRIMARY KEY,
    programme_id uuid NOT NULL REFERENCES programmes (id),
    name         text NOT NULL,
    status       text NOT NULL CHECK (status IN ('open', 'closed')),
    chair_id     uuid NOT NULL REFERENCES users (id),
    quorum       integer NOT NULL,
    members      uuid[] NOT NULL,
    opened_by    uuid NOT NULL REFERENCES users (id),
    opened_at    timestamptz NOT NULL,
    closed_at    timestamptz
);
CREATE INDEX council_sessions_by_programme ON council_sessions (programme_id, opened_at DESC);

CREATE TABLE council_items (
    session_id     uuid NOT NULL REFERENCES council_sessions (id),
    application_id uuid NOT NULL REFERENCES applications (id),
    rank           integer NOT NULL,
    PRIMARY KEY (session_id, application_id)
);
CREATE INDEX council_items_by_application ON council_items (application_id);

-- The latest vote of each member on each item (a member may change its vote while open).
CREATE TABLE votes (
    session_id     uuid NOT NULL REFERENCES council_sessions (id),
    application_id uuid NOT NULL REFERENCES applications (id),
    member_id      uuid NOT NULL REFERENCES users (id),
    choice         text NOT NULL CHECK (choice IN ('approve', 'reject', 'defer')),
    amount_rub     bigint,
    reason         text NOT NULL,
    at             timestamptz NOT NULL,
    PRIMARY KEY (session_id, application_id, member_id)
);

CREATE TABLE decisions (
    session_id     uuid NOT NULL REFERENCES council_sessions (id),
    application_id uuid NOT NULL REFERENCES applications (id),
    outcome        text NOT NULL CHECK (outcome IN ('approved', 'rejected', 'deferred')),
    amount_rub     bigint,
    reason         text NOT NULL,
    votes          jsonb NOT NULL,
    decided_at     timestamptz NOT NULL,
    PRIMARY KEY (session_id, application_id)
);
CREATE INDEX decisions_by_application ON decisions (application_id, decided_at);

ALTER TABLE applications ADD COLUMN approved_rub bigint;

-- The budget ledger, append-only. reserve: an approval; release: money back (withdrawal,
-- lapse, reduction, unspent at close); disburse: a tranche paid out of a reservation.
-- key is the natural key of the write, so a retried activity records nothing twice; a refused
-- reservation or an empty release is kept as a zero entry, so that its retry answers the same.
CREATE TABLE ledger_entries (
    id             bigserial PRIMARY KEY,
    key            text NOT NULL UNIQUE,
    programme_id   uuid NOT NULL REFERENCES programmes (id),
    application_id uuid NOT NULL REFERENCES applications (id),
    kind           text NOT NULL CHECK (kind IN ('reserve', 'release', 'disburse')),
    amount_rub     bigint NOT NULL CHECK (amount_rub >= 0),
    reason         text NOT NULL,
    at             timestamptz NOT NULL
);
CREATE INDEX ledger_by_programme ON ledger_entries (programme_id, id);
CREATE INDEX ledger_by_application ON ledger_entries (application_id, id);
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

CREATE TABLE agreements (
    application_id uuid PRIMARY KEY REFERENCES applications (id),
    programme_id   uuid NOT NULL REFERENCES programmes (id),
    amount_rub     bigint NOT NULL,
    status         text NOT NULL CHECK (status IN ('offered', 'accepted', 'lapsed', 'declined',
                                                   'completed', 'cancelled')),
    version        integer NOT NULL,
    offered_at     timestamptz NOT NULL,
    accept_by      timestamptz NOT NULL,
    accepted_at    timestamptz,
    updated_at     timestamptz NOT NULL
);

CREATE TABLE tranches (
    application_id uuid NOT NULL REFERENCES agreements (application_id),
    seq            integer NOT NULL,
    amount_rub     bigint NOT NULL,
    due_at         timestamptz,
    status         text NOT NULL CHECK (status IN ('scheduled', 'held', 'released', 'cancelled')),
    held_reason    text,
    released_at    timestamptz,
    PRIMARY KEY (application_id, seq)
);

CREATE TABLE reports (
    application_id uuid NOT NULL REFERENCES agreements (application_id),
    seq            integer NOT NULL,
    due_at         timestamptz NOT NULL,
    status         text NOT NULL CHECK (status IN ('due', 'submitted', 'accepted', 'returned')),
    body           text,
    comment        text,
    submitted_at   timestamptz,
    reviewed_by    uuid REFERENCES users (id),
    reviewed_at    timestamptz,
    PRIMARY KEY (application_id, seq)
);
CREATE INDEX reports_open_by_due ON reports (due_at) WHERE status IN ('due', 'returned');
