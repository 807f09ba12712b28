-- A review being written: what the reviewer's rubric form holds, valid or not, saved as it is
-- typed, so that a reload or a sign-out loses nothing. One per task; gone with nothing else.
CREATE TABLE review_drafts (
    task_id     uuid PRIMARY KEY REFERENCES review_tasks (id),
    reviewer_id uuid NOT NULL REFERENCES users (id),
    content     jsonb NOT NULL DEFAULT '{}',
    updated_at  timestamptz NOT NULL DEFAULT now()
);
