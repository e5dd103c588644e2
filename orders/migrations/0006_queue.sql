-- On-sale queues (issue 30): for a listing with `on_sale_at`, the accounts that want to
-- order, admitted a few at a time from the sale on.
--
-- `next_rank` and `admitted_through` are ranks: the line is every entry ranked
-- `admitted_through + 1 ..= next_rank - 1`. Entries that joined before the sale have a
-- random `draw` and no rank until the sale, when one statement ranks them by draw
-- (`ranked` turns 1, once); later joins take `next_rank` in arrival order. The pacer
-- moves `admitted_through` by a conditional update, so no rank is admitted twice.
CREATE TABLE queues (
    ticket_id        TEXT PRIMARY KEY REFERENCES tickets (id),
    ranked           BIGINT NOT NULL DEFAULT 0,
    next_rank        BIGINT NOT NULL DEFAULT 1,
    admitted_through BIGINT NOT NULL DEFAULT 0,
    admitted_at      BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE queue_entries (
    ticket_id      TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    joined_at      BIGINT NOT NULL,
    draw           BIGINT,
    rank           BIGINT,
    admitted_until BIGINT,
    used_at        BIGINT,
    PRIMARY KEY (ticket_id, user_id)
);
CREATE UNIQUE INDEX queue_entries_by_rank ON queue_entries (ticket_id, rank);
