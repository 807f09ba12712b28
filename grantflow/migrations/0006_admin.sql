-- Admins' search: the filtered, keyset-paged application list and its overdue filter.
-- Each index serves one filter in `ORDER BY submitted_at DESC, id DESC` order, so that a page
-- reads only its own rows (bench/queries.py times them; EXPLAIN showed a sort without them).

CREATE INDEX applications_newest ON applications (submitted_at DESC, id DESC);
CREATE INDEX applications_by_programme_newest
    ON applications (programme_id, submitted_at DESC, id DESC);
CREATE INDEX applications_by_institution
    ON applications (institution_id, submitted_at DESC, id DESC);
CREATE INDEX applications_by_specialty ON applications (specialty, submitted_at DESC, id DESC);
-- Overdue: an applicant's deadline, an open review task's, or a report still not in.
CREATE INDEX applications_by_deadline ON applications (deadline) WHERE deadline IS NOT NULL;
CREATE INDEX reports_overdue_open ON reports (application_id)
    WHERE overdue AND status IN ('due', 'returned');
