-- Pilot testing in clinics (sites, their coordinators, the evaluation and the decision) and
-- reporting to the project's close.

ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check
    CHECK (role IN ('applicant', 'reviewer', 'council', 'admin', 'coordinator'));

-- The project's end: `implemented` or `not_implemented` once it is closed.
ALTER TABLE applications ADD COLUMN outcome text
    CHECK (outcome IN ('implemented', 'not_implemented'));
CREATE INDEX applications_by_programme_outcome ON applications (programme_id, outcome)
    WHERE outcome IS NOT NULL;

ALTER TABLE agreements DROP CONSTRAINT agreements_status_check;
ALTER TABLE agreements ADD CONSTRAINT agreements_status_check
    CHECK (status IN ('offered', 'accepted', 'lapsed', 'declined', 'completed', 'cancelled',
                      'stopped'));

ALTER TABLE reports ADD COLUMN final boolean NOT NULL DEFAULT false;
ALTER TABLE reports ADD COLUMN overdue boolean NOT NULL DEFAULT false;
ALTER TABLE reports ADD COLUMN reminded boolean NOT NULL DEFAULT false;
ALTER TABLE reports ADD COLUMN programme_id uuid REFERENCES programmes (id);
CREATE INDEX reports_overdue ON reports (programme_id, due_at) WHERE overdue;

CREATE TABLE pilots (
    application_id uuid PRIMARY KEY REFERENCES applications (id),
    programme_id   uuid NOT NULL REFERENCES programmes (id),
    status         text NOT NULL CHECK (status IN ('running', 'evaluating', 'deciding',
                                                   'implement', 'stop', 'cancelled')),
    round          integer NOT NULL,
    version        integer NOT NULL,
    evaluator_id   uuid REFERENCES users (id),
    evaluation     jsonb,
    decision       jsonb,
    flag_reason    text,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX pilots_by_programme ON pilots (programme_id, status);

CREATE TABLE pilot_sites (
    id             text PRIMARY KEY,  -- site-<application uuid>-<n>: the site's workflow id
    application_id uuid NOT NULL REFERENCES applications (id),
    programme_id   uuid NOT NULL REFERENCES programmes (id),
    seq            integer NOT NULL,
    round          integer NOT NULL,
    clinic_id      text NOT NULL REFERENCES institutions (id),
    status         text NOT NULL CHECK (status IN ('proposed', 'accepted', 'declined', 'running',
                                                   'completed', 'cancelled')),
    version        integer NOT NULL,
    starts_at      timestamptz NOT NULL,
    ends_at        timestamptz NOT NULL,
    report_by      timestamptz NOT NULL,
    metrics        jsonb NOT NULL,
    measurements   jsonb,
    reason         text,
    escalated      boolean NOT NULL DEFAULT false,
    updated_at     timestamptz NOT NULL,
    UNIQUE (application_id, seq)
);
CREATE INDEX pilot_sites_by_clinic ON pilot_sites (clinic_id, starts_at DESC);
CREATE INDEX pilot_sites_by_programme ON pilot_sites (programme_id, clinic_id, status);
