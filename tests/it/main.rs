//! Integration tests: the bridge and the sandbox in-process on loopback port 0, a real
//! SQLite file per test, real HTTP in between. One test binary.

mod helpers;
#[path = "../common/postgres.rs"]
mod postgres;

mod architecture;
mod browser;
mod catalog;
mod cli;
mod connection;
mod docs;
mod fixtures;
mod handoff;
mod hardening;
mod incidents;
mod intake;
mod keys;
mod metrics;
mod openapi;
mod opencx;
mod page_actions;
mod reliability;
mod replay;
mod secrets;
mod status;
mod thin;
mod time_to_human;
