//! The `terapi` binary as users run it: one test binary, one module per
//! feature. `common` holds what every module shares (the fake Gong, the
//! binary with a clean environment, data dirs); helpers a few modules share
//! are re-exported here.

mod commands;
mod common;
mod deploy;
mod fleet;
mod interrupts;
mod limits;
mod mcp;
mod nango_providers;
mod node;
mod oauth;
mod readme;
mod serve_hardening;
mod webhooks;

#[allow(unused_imports)]
pub(crate) use {fleet::*, interrupts::*, limits::*, node::*};
