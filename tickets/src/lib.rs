//! Tickets service: listings and their reservation state (`/api/tickets`).
