//! The guest components, compiled for `wasm32-wasip2` by this crate's build
//! script from the workspace sources (nothing prebuilt is committed).

/// The Gong provider component (`provider-gong`), serving `gong` and `gong-oauth`.
pub const PROVIDER_GONG: &[u8] = include_bytes!(env!("PROVIDER_GONG_WASM"));

/// A deliberately hostile component, for sandbox tests only.
pub const GUEST_HOSTILE: &[u8] = include_bytes!(env!("GUEST_HOSTILE_WASM"));

/// Synthesises records without HTTP, to measure the component boundary alone.
pub const GUEST_BOUNDARY: &[u8] = include_bytes!(env!("GUEST_BOUNDARY_WASM"));
