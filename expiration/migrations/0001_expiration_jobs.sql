-- One pending expiry per order. `available_at` is when the job may next be claimed: its
-- due time while pending, the lease's end while claimed (a claimer that dies before
-- completing leaves the job to be claimed again then).
CREATE TABLE expiration_jobs (
    order_id     TEXT PRIMARY KEY,
    due_at       BIGINT NOT NULL,
    available_at BIGINT NOT NULL,
    claim_token  TEXT
);
CREATE INDEX expiration_jobs_available_at ON expiration_jobs (available_at);
