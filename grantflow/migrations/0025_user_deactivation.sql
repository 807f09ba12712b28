-- An admin deactivates a user: the row stays (its name is on applications, reviews and the
-- audit), but neither its sessions, its bearer token nor its password let anyone in again.
ALTER TABLE users ADD COLUMN deactivated_at timestamptz;
