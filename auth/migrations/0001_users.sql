CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
-- E-mails are unique case-insensitively, enforced here rather than by a prior lookup.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));
