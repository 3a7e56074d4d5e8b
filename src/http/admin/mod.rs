//! Admin API (README, "Setting up an org"), one file per resource: orgs and their webhook secrets
//! (`orgs.rs`), the Dynamics connection (`connection.rs`), handoff records, replay and the
//! status facts (`sessions.rs`). Behind the admin token (see `require_admin`).

mod connection;
mod orgs;
mod sessions;

pub use connection::*;
pub use orgs::*;
pub use sessions::*;
