-- grantflow's first schema: users, programmes, applications and the audit trail.
-- Migrations are forward-only; never edit one that has been applied anywhere.

CREATE TABLE institutions (
    id                text PRIMARY KEY,
    name              text NOT NULL,
    organisation_type text NOT NULL
);

CREATE TABLE users (
    id             uuid PRIMARY KEY,
    name           text NOT NULL,
    role           text NOT NULL CHECK (role IN ('applicant', 'reviewer', 'council', 'admin')),
    institution_id text REFERENCES institutions (id),
    specialty      text,
    token_hash     bytea NOT NULL UNIQUE,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE programmes (
    id                     uuid PRIMARY KEY,
    name                   text NOT NULL,
    budget_rub             bigint NOT NULL CHECK (budget_rub > 0),
    max_grant_rub          bigint NOT NULL CHECK (max_grant_rub > 0),
    organisation_types     text[] NOT NULL,
    specialties            text[] NOT NULL,
    intake_opens           timestamptz NOT NULL,
    intake_closes          timestamptz NOT NULL,
    intake_state           text NOT NULL DEFAULT 'scheduled',
    complex_share_limit    numeric NOT NULL,
    complex_annual_cap_rub bigint NOT NULL,
    params                 jsonb NOT NULL,
    created_by             uuid NOT NULL REFERENCES users (id),
    created_at             timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE applications (
    id              uuid PRIMARY KEY,
    programme_id    uuid NOT NULL REFERENCES programmes (id),
    applicant_id    uuid NOT NULL REFERENCES users (id),
    institution_id  text REFERENCES institutions (id),
    workflow_id     text NOT NULL UNIQUE,
    specialty       text NOT NULL,
    requested_rub   bigint NOT NULL,
    content         jsonb NOT NULL,
    stage           text NOT NULL,
    stage_seq       integer NOT NULL,
    action_required text,
    deadline        timestamptz,
    findings        jsonb NOT NULL DEFAULT '[]',
    idempotency_key text,
    request_digest  text NOT NULL,
    submitted_at    timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE UNIQUE INDEX applications_idempotency ON applications (applicant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX applications_by_applicant ON applications (applicant_id, submitted_at DESC, id DESC);
CREATE INDEX applications_by_programme ON applications (programme_id, stage, submitted_at DESC, id DESC);
CREATE INDEX applications_by_stage ON applications (stage, submitted_at DESC, id DESC);

-- Append-only: every stage change and every human action. event_key is the natural key that
-- makes a retried activity write its event once.
CREATE TABLE audit_events (
    id             bigserial PRIMARY KEY,
    event_key      text NOT NULL UNIQUE,
    application_id uuid REFERENCES applications (id),
    programme_id   uuid REFERENCES programmes (id),
    workflow_id    text NOT NULL,
    kind           text NOT NULL,
    stage          text,
    actor_id       uuid REFERENCES users (id),
    actor_role     text,
    reason         text,
    detail         jsonb NOT NULL DEFAULT '{}',
    at             timestamptz NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_by_application ON audit_events (application_id, at, id);
CREATE INDEX audit_by_programme ON audit_events (programme_id, at, id);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END $$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
