mod expiration_complete;
mod payment_created;

pub use expiration_complete::ExpirationCompleteListener;
pub use payment_created::PaymentCreatedListener;
