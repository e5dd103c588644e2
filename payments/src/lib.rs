//! Payments service: charging orders (`/api/payments`).
