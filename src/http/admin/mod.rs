//! Admin API (README, "Setting up an org"), one file per resource: orgs and their webhook secrets
//! (`orgs.rs`), the Dynamics connection (`connection.rs`), the OpenCX connection
//! (`opencx.rs`), handoff records, replay and the
//! status facts (`sessions.rs`). Behind the admin token (see `require_admin`).

mod connection;
mod opencx;
mod orgs;
mod sessions;

pub use connection::*;
pub use opencx::*;
pub use orgs::*;
pub use sessions::*;
