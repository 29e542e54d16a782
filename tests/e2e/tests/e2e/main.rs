//! The end-to-end suite: the real Gong component in the real wasmtime host,
//! over real HTTP to the fake Gong on loopback. One test binary, because
//! every binary links wasmtime and cranelift; seven of them cost minutes of
//! linking and gigabytes of disk for nothing.

mod connect_security;
mod contract;
mod fleet;
mod governance;
mod limits;
mod oauth;
mod platform;
mod postgres_tls;
mod providers_yaml;
mod sandbox;
mod serve;
mod serve_security;
mod slice;
mod store;
mod store_conformance;
mod store_upgrade;
mod surface;
