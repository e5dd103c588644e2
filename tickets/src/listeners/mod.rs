pub mod order_cancelled;
pub mod order_created;
