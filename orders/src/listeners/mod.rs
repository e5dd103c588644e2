mod expiration_complete;
mod payment_created;
mod ticket_updated;

pub use expiration_complete::ExpirationCompleteListener;
pub use payment_created::PaymentCreatedListener;
pub use ticket_updated::TicketUpdatedListener;
