//! The inbound side of OpenCX: Standard Webhooks signing and verification, and the session
//! envelope the widget backend posts when its AI hands a conversation to a human.

pub mod address;
pub mod envelope;
pub mod send;
pub mod signature;
pub mod upgrade;

pub use envelope::{Envelope, FieldError, HANDOFF_EVENT};
pub use signature::{SignatureError, WebhookSecret};
