//! Expiration service: fires `expiration:complete` when an order's reservation runs out.
