//! The component's stack. Rust gives wasm32 a 1 MiB stack at the bottom of
//! linear memory; the host's instance pool re-zeroes what an instance used
//! on every call, so an oversized stack is paid for on every call. 256 KiB
//! holds serde_json's deepest recursion (128 levels) with room to spare;
//! an overflow traps cleanly (the sandbox e2e tests parse absurd nesting).
const STACK_BYTES: usize = 256 * 1024;

fn main() {
    // Native builds (the unit tests and the benches' baseline) keep their
    // platform's stack.
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg-cdylib=-zstack-size={STACK_BYTES}");
        // Without std nothing links wasi-libc, which is where wasm32-wasip2
        // keeps memcmp and friends, and malloc (src/without_std.rs); only
        // those plain-C objects are taken from it (none of them imports WASI).
        println!("cargo:rustc-link-arg-cdylib=-lc");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
