-- People sign in to the pages: e-mail and password, sessions, single-use links, and drafts of
-- applications. Bearer tokens stay for programs; a person who signs up has none.

ALTER TABLE users ALTER COLUMN token_hash DROP NOT NULL;
ALTER TABLE users
    ADD COLUMN password_hash      text,
    ADD COLUMN email_confirmed_at timestamptz,
    ADD COLUMN locale             text NOT NULL DEFAULT 'ru' CHECK (locale IN ('ru', 'en')),
    ADD COLUMN time_zone          text NOT NULL DEFAULT 'Europe/Moscow';
-- One account per address whatever its case: Anna@Clinic.ru and anna@clinic.ru are one person.
CREATE UNIQUE INDEX users_email ON users (lower(email)) WHERE email IS NOT NULL;

-- A session is a row: revocable at once ("sign out everywhere"), with an idle and an absolute
-- end. The cookie holds the id; the table only its SHA-256, so a leaked dump signs nobody in.
CREATE TABLE sessions (
    id_hash      bytea PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    client_addr  text,
    user_agent   text
);
CREATE INDEX sessions_by_user ON sessions (user_id) WHERE revoked_at IS NULL;

-- Links sent by e-mail (confirm the address, set or reset the password): random tokens kept as
-- SHA-256 hashes, each used once, before it expires.
CREATE TABLE account_links (
    token_hash bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id),
    purpose    text NOT NULL CHECK (purpose IN ('confirm_email', 'set_password', 'reset_password')),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX account_links_by_user ON account_links (user_id, purpose);

-- Sign-in attempts, for the throttle (per account and per client address) and the audit.
CREATE TABLE sign_in_attempts (
    id          bigserial PRIMARY KEY,
    email       text NOT NULL,
    client_addr text NOT NULL,
    succeeded   boolean NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sign_in_attempts_by_email ON sign_in_attempts (lower(email), at);
CREATE INDEX sign_in_attempts_by_addr ON sign_in_attempts (client_addr, at);

-- What happened to accounts (registered, confirmed, signed in, throttled, signed out
-- everywhere...), append-only like the applications' audit trail.
CREATE TABLE account_events (
    id          bigserial PRIMARY KEY,
    user_id     uuid REFERENCES users (id),
    kind        text NOT NULL,
    email       text,
    client_addr text,
    detail      jsonb NOT NULL DEFAULT '{}',
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX account_events_by_user ON account_events (user_id, at);
CREATE TRIGGER account_events_append_only BEFORE UPDATE OR DELETE ON account_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

-- An application being written: not an application until it is submitted, so it has no
-- workflow and no stage. `content` is what the form holds, valid or not.
CREATE TABLE drafts (
    id             uuid PRIMARY KEY,
    applicant_id   uuid NOT NULL REFERENCES users (id),
    programme_id   uuid NOT NULL REFERENCES programmes (id),
    content        jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    application_id uuid REFERENCES applications (id)
);
CREATE INDEX drafts_by_applicant ON drafts (applicant_id, updated_at DESC);
