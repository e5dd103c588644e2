-- A row per session (a token's `sid`), so that sign-out everywhere and a password change
-- can name every session of an account. `revoked_at` is set when it ends early; rows go
-- once their tokens have expired.
CREATE TABLE sessions (
    sid         TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX sessions_user_id ON sessions (user_id, expires_at);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
