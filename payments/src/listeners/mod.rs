mod order_cancelled;

pub use order_cancelled::OrderCancelledListener;
