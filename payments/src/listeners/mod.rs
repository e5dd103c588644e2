mod order_cancel_requested;
mod order_cancelled;

pub use order_cancel_requested::OrderCancelRequestedListener;
pub use order_cancelled::OrderCancelledListener;
