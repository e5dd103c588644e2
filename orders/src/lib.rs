//! Orders service: reservations of tickets (`/api/orders`).
