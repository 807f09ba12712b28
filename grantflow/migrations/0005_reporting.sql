-- Reporting at the programme's cadences: each report has a kind (progress, financial, final),
-- and an admin may assign an expert to accept or return a project's reports.

ALTER TABLE reports ADD COLUMN kind text NOT NULL DEFAULT 'progress'
    CHECK (kind IN ('progress', 'financial', 'final'));
UPDATE reports SET kind = 'final' WHERE final;

ALTER TABLE agreements ADD COLUMN report_reviewer_id uuid REFERENCES users (id);
-- An expert's queue of submitted reports starts from the agreements assigned to it.
CREATE INDEX agreements_by_report_reviewer ON agreements (report_reviewer_id)
    WHERE report_reviewer_id IS NOT NULL;
