mod expiration_complete;
mod payment_created;
mod payment_refund_failed;
mod payment_refunded;
mod ticket_updated;

pub use expiration_complete::ExpirationCompleteListener;
pub use payment_created::PaymentCreatedListener;
pub use payment_refund_failed::PaymentRefundFailedListener;
pub use payment_refunded::PaymentRefundedListener;
pub use ticket_updated::TicketUpdatedListener;
