-- The two lists over 10 ms at 100,000 applications (bench/queries.py), each read from indexes
-- alone instead of visiting a table page per row.

-- The admins' overdue filter takes the ids of applications past their own deadline from this
-- index without reading the table (it visited one table page per id: a thousand and more).
-- It serves whatever the narrower index served.
CREATE INDEX applications_deadline_ids ON applications (deadline) INCLUDE (id)
    WHERE deadline IS NOT NULL;
DROP INDEX applications_by_deadline;

-- The programme figures: the sums by institution, and the money, of one programme, each from
-- an index alone (they read some two thousand table pages per programme).
CREATE INDEX applications_programme_figures ON applications (programme_id, institution_id)
    INCLUDE (requested_rub, approved_rub);
CREATE INDEX ledger_programme_figures ON ledger_entries (programme_id) INCLUDE (kind, amount_rub);
