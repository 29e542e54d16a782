//! One module per command group: each reads its arguments, calls the
//! platform, and prints.

pub mod action;
pub mod connection;
pub mod connection_args;
pub mod mcp;
pub mod providers;
pub mod records;
pub mod serve;
pub mod sync;
pub mod tool;
pub mod webhooks;
