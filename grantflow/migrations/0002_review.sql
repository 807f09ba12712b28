-- Expert review: tasks, reviews, the flag an admin must clear, and the notification outbox.

ALTER TABLE users ADD COLUMN email text;
-- Review assignment: reviewers of a specialty, in a stable order.
CREATE INDEX users_reviewers ON users (specialty, id) WHERE role = 'reviewer';

ALTER TABLE applications
    ADD COLUMN reviews_required  integer,
    ADD COLUMN reviews_submitted integer NOT NULL DEFAULT 0,
    ADD COLUMN review_score      numeric,
    ADD COLUMN review_spread     numeric,
    ADD COLUMN flag_reason       text,
    ADD COLUMN flagged_at        timestamptz;
CREATE INDEX applications_flagged ON applications (flagged_at, id) WHERE flag_reason IS NOT NULL;

-- One row per offer of an application to a reviewer. `version` is the review workflow's
-- change counter: a retried or late write never takes a task back to an older state.
-- `deadline` is the one that matters now: accept_by while offered, due_by while accepted.
CREATE TABLE review_tasks (
    id                uuid PRIMARY KEY,
    application_id    uuid NOT NULL REFERENCES applications (id),
    programme_id      uuid NOT NULL REFERENCES programmes (id),
    reviewer_id       uuid NOT NULL REFERENCES users (id),
    workflow_id       text NOT NULL,
    status            text NOT NULL CHECK (status IN
                          ('offered', 'accepted', 'submitted', 'declined', 'expired', 'cancelled')),
    version           integer NOT NULL,
    offered_at        timestamptz NOT NULL,
    accept_by         timestamptz NOT NULL,
    due_by            timestamptz,
    deadline          timestamptz,
    reason            text,
    conflict_declared boolean NOT NULL DEFAULT false,
    reminders_sent    integer NOT NULL DEFAULT 0,
    assigned_by       uuid REFERENCES users (id),
    updated_at        timestamptz NOT NULL,
    UNIQUE (application_id, reviewer_id)
);
-- A reviewer's inbox, soonest deadline first; the admin's overdue list; a reviewer's load.
CREATE INDEX review_tasks_inbox ON review_tasks (reviewer_id, deadline, id)
    WHERE status IN ('offered', 'accepted');
CREATE INDEX review_tasks_open_by_deadline ON review_tasks (deadline, id)
    WHERE status IN ('offered', 'accepted');
CREATE INDEX review_tasks_by_application ON review_tasks (application_id, offered_at, id);

CREATE TABLE reviews (
    task_id        uuid PRIMARY KEY REFERENCES review_tasks (id),
    application_id uuid NOT NULL REFERENCES applications (id),
    reviewer_id    uuid NOT NULL REFERENCES users (id),
    scores         jsonb NOT NULL,
    score          numeric NOT NULL,
    recommendation text NOT NULL,
    comments       text NOT NULL,
    submitted_at   timestamptz NOT NULL
);
CREATE INDEX reviews_by_application ON reviews (application_id, submitted_at, task_id);

-- The outbox: written in the same transaction as the change it announces, keyed so that a
-- retried activity adds nothing, and marked delivered by the one sender that sent it.
CREATE TABLE notifications (
    id             bigserial PRIMARY KEY,
    key            text NOT NULL UNIQUE,
    user_id        uuid NOT NULL REFERENCES users (id),
    kind           text NOT NULL,
    subject        text NOT NULL,
    body           text NOT NULL,
    application_id uuid REFERENCES applications (id),
    task_id        uuid REFERENCES review_tasks (id),
    created_at     timestamptz NOT NULL,
    delivered_at   timestamptz,
    attempts       integer NOT NULL DEFAULT 0,
    last_error     text
);
CREATE INDEX notifications_by_user ON notifications (user_id, id DESC);
CREATE INDEX notifications_undelivered ON notifications (id) WHERE delivered_at IS NULL;
