-- Bearer tokens expire, can be revoked or rotated, and say when they were last used.
-- A token made before this migration gets 90 days from now, as a new one does; the default
-- also covers users inserted without a token or an expiry of their own.
ALTER TABLE users
    ADD COLUMN token_expires_at   timestamptz NOT NULL DEFAULT now() + interval '90 days',
    ADD COLUMN token_revoked_at   timestamptz,
    ADD COLUMN token_last_used_at timestamptz;

-- Notifications are claimed (committed) before the send and marked after it, so that no row
-- lock is held while the mail relay is called. A claim older than the lease is a delivery
-- that died mid-way: the next one sends the notification again.
ALTER TABLE notifications ADD COLUMN claimed_at timestamptz;
