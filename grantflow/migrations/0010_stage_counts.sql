-- The admins' list counts applications per stage on every page. Counting them from the table
-- reads every row of a programme, or of the whole table when no programme is chosen (at
-- 100,000 applications: 200 ms and more, bench/queries.py). These counts per (programme, stage)
-- are kept by a trigger in the same transaction as each insert and stage change, whoever
-- writes it (the activities, a bulk COPY), so they are exact and a count reads at most one
-- row per programme and stage.

CREATE TABLE application_stage_counts (
    programme_id uuid NOT NULL REFERENCES programmes (id),
    stage        text NOT NULL,
    n            bigint NOT NULL,
    PRIMARY KEY (programme_id, stage)
);

INSERT INTO application_stage_counts (programme_id, stage, n)
SELECT programme_id, stage, count(*) FROM applications GROUP BY programme_id, stage;

CREATE FUNCTION application_stage_counts_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One statement, its rows in (programme, stage) order: two transactions moving stages in
    -- opposite directions lock the counters in the same order, so they never deadlock.
    INSERT INTO application_stage_counts AS c (programme_id, stage, n)
    SELECT d.programme_id, d.stage, sum(d.delta)
    FROM (SELECT OLD.programme_id, OLD.stage, -1 WHERE TG_OP IN ('UPDATE', 'DELETE')
          UNION ALL
          SELECT NEW.programme_id, NEW.stage, 1 WHERE TG_OP IN ('UPDATE', 'INSERT'))
         AS d (programme_id, stage, delta)
    GROUP BY d.programme_id, d.stage
    HAVING sum(d.delta) <> 0
    ORDER BY d.programme_id, d.stage
    ON CONFLICT (programme_id, stage) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;

CREATE TRIGGER application_stage_counts_insert AFTER INSERT OR DELETE ON applications
    FOR EACH ROW EXECUTE FUNCTION application_stage_counts_keep();
CREATE TRIGGER application_stage_counts_update AFTER UPDATE OF programme_id, stage ON applications
    FOR EACH ROW WHEN (OLD.stage IS DISTINCT FROM NEW.stage
                       OR OLD.programme_id IS DISTINCT FROM NEW.programme_id)
    EXECUTE FUNCTION application_stage_counts_keep();

-- The flagged filter: its page walks this index newest first and its counts read it alone
-- (stage included), instead of sorting or visiting the heap.
CREATE INDEX applications_flagged_newest ON applications (submitted_at DESC, id DESC)
    INCLUDE (stage) WHERE flag_reason IS NOT NULL;
-- The specialty filter's counts (a twelfth of the table each) read this index alone.
CREATE INDEX applications_by_specialty_stage ON applications (specialty, stage);
-- The overdue filter looks its thousands of ids up by primary key: this index answers with
-- the stage (counts) and the order (the page's ids) without reading the table.
CREATE INDEX applications_id_covering ON applications (id) INCLUDE (submitted_at, stage);
