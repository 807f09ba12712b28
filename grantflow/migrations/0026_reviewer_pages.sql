-- A reviewer's ended tasks, the latest first: the inbox's "ended lately" and the past reviews
-- read them on every visit (without it, a scan of every review task: 270,000 at 100,000
-- applications).
CREATE INDEX review_tasks_closed ON review_tasks (reviewer_id, updated_at DESC, id)
    WHERE status NOT IN ('offered', 'accepted');
-- The pilots waiting for an expert's evaluation, longest waiting first (the inbox reads them).
CREATE INDEX pilots_by_evaluator ON pilots (evaluator_id, updated_at, application_id)
    WHERE status = 'evaluating';
