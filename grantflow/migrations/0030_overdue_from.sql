-- The admins' overdue filter (issue 17): an application is overdue when its own deadline, an
-- open review task's deadline, or an open report marked overdue is past. Found at query time,
-- that is the union of three sources and then one primary-key lookup per id (some 4,600 at
-- 100,000 applications) for its stage and submission time: 12 to 14 ms, over the 10 ms target.
-- Kept here instead, as the moment the application became or becomes overdue, so that one
-- index holds every overdue application with what the list and its counts read.
--
-- overdue_from: the earliest of the application's own deadline and its open review tasks'
-- deadlines, or -infinity while one of its open reports is marked overdue (that mark is the
-- report's own "past due"); NULL when nothing of it can fall due. Overdue now is
-- `overdue_from < now()`, the same rows as the three sources' union.
ALTER TABLE applications ADD COLUMN overdue_from timestamptz;

CREATE FUNCTION application_overdue_from(application uuid, own_deadline timestamptz)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT least(
        own_deadline,
        (SELECT min(t.deadline) FROM review_tasks t
         WHERE t.application_id = application AND t.status IN ('offered', 'accepted')),
        (SELECT '-infinity'::timestamptz WHERE EXISTS (
            SELECT 1 FROM reports r
            WHERE r.application_id = application AND r.overdue
              AND r.status IN ('due', 'returned'))))
$$;

-- The application's own deadline changes with its row: set before it is written.
CREATE FUNCTION applications_overdue_from_own() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.overdue_from := application_overdue_from(NEW.id, NEW.deadline);
    RETURN NEW;
END $$;

CREATE TRIGGER applications_overdue_from_insert BEFORE INSERT ON applications
    FOR EACH ROW EXECUTE FUNCTION applications_overdue_from_own();
CREATE TRIGGER applications_overdue_from_update BEFORE UPDATE OF deadline ON applications
    FOR EACH ROW WHEN (OLD.deadline IS DISTINCT FROM NEW.deadline)
    EXECUTE FUNCTION applications_overdue_from_own();

-- A review task's or a report's change, in the same transaction as the change. The lock
-- order is the one the writes already take: the task or report first, then its application
-- (as a review's record sets the application's flag and count after its task). The
-- application's row is locked before the value is read, so that two transactions changing
-- two rows of one application (a task and a report) each read the other's committed change:
-- computed in the UPDATE alone, the second would keep the value its snapshot saw. NO KEY
-- UPDATE is the lock the UPDATE takes anyway, and it does not wait for inserts holding the
-- row's key (a new task's foreign key).
CREATE FUNCTION applications_overdue_from_children() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    application uuid := CASE TG_OP WHEN 'DELETE' THEN OLD.application_id
                                   ELSE NEW.application_id END;
BEGIN
    PERFORM 1 FROM applications WHERE id = application FOR NO KEY UPDATE;
    UPDATE applications
    SET overdue_from = application_overdue_from(id, deadline)
    WHERE id = application
      AND overdue_from IS DISTINCT FROM application_overdue_from(id, deadline);
    RETURN NULL;
END $$;

-- Only the changes that can move the value: an open task's deadline, a task opened or
-- closed, a report's overdue mark or its status.
CREATE TRIGGER review_tasks_overdue_from_insert AFTER INSERT ON review_tasks
    FOR EACH ROW WHEN (NEW.status IN ('offered', 'accepted') AND NEW.deadline IS NOT NULL)
    EXECUTE FUNCTION applications_overdue_from_children();
CREATE TRIGGER review_tasks_overdue_from_update AFTER UPDATE OF status, deadline ON review_tasks
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
                       OR OLD.deadline IS DISTINCT FROM NEW.deadline)
    EXECUTE FUNCTION applications_overdue_from_children();
CREATE TRIGGER review_tasks_overdue_from_delete AFTER DELETE ON review_tasks
    FOR EACH ROW WHEN (OLD.status IN ('offered', 'accepted') AND OLD.deadline IS NOT NULL)
    EXECUTE FUNCTION applications_overdue_from_children();
CREATE TRIGGER reports_overdue_from_insert AFTER INSERT ON reports
    FOR EACH ROW WHEN (NEW.overdue AND NEW.status IN ('due', 'returned'))
    EXECUTE FUNCTION applications_overdue_from_children();
CREATE TRIGGER reports_overdue_from_update AFTER UPDATE OF overdue, status ON reports
    FOR EACH ROW WHEN (OLD.overdue IS DISTINCT FROM NEW.overdue
                       OR OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION applications_overdue_from_children();
CREATE TRIGGER reports_overdue_from_delete AFTER DELETE ON reports
    FOR EACH ROW WHEN (OLD.overdue AND OLD.status IN ('due', 'returned'))
    EXECUTE FUNCTION applications_overdue_from_children();

UPDATE applications a SET overdue_from = application_overdue_from(a.id, a.deadline)
WHERE application_overdue_from(a.id, a.deadline) IS NOT NULL;

-- Every application that is or will be overdue, with the stage the counts group by and the
-- submission time the page is ordered by: the list reads this index alone.
CREATE INDEX applications_overdue ON applications (overdue_from) INCLUDE (stage, submitted_at, id)
    WHERE overdue_from IS NOT NULL;
-- Only the overdue filter read these (its deadlines, and its ids' lookups).
DROP INDEX applications_deadline_ids;
DROP INDEX applications_id_covering;
