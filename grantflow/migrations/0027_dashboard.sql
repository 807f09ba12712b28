-- The admins' dashboard lists the pilot sites escalated and still open, the longest waiting
-- first: a few among every site there ever was.
CREATE INDEX pilot_sites_escalated ON pilot_sites (updated_at)
    WHERE escalated AND status NOT IN ('completed', 'cancelled', 'declined');
