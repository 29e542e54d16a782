//! What std provides a wasm32-wasip2 component, provided here instead:
//! an allocator, the canonical ABI's `cabi_realloc`, and a panic handler.
//! (wasi-libc, linked for memcmp and friends only, has a `cabi_realloc`
//! too, but on its own malloc's heap; ours is defined first, so the linker
//! never takes that one.)

use crate::terapi::provider::log::{Level, log};

/// The allocator std itself uses on wasm32.
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// The host calls this to place arguments (strings, lists) in our memory;
/// what it allocates, the bindings free with the global allocator, so it
/// must be the same one.
///
/// # Safety
/// Called by the component model's canonical ABI with a layout it keeps to.
#[unsafe(no_mangle)]
unsafe extern "C" fn cabi_realloc(old_ptr: *mut u8, old_len: usize, align: usize, new_len: usize) -> *mut u8 {
    use alloc::alloc::{Layout, alloc, realloc};
    let ptr = unsafe {
        if old_len == 0 {
            if new_len == 0 {
                return align as *mut u8;
            }
            alloc(Layout::from_size_align_unchecked(new_len, align))
        } else {
            realloc(old_ptr, Layout::from_size_align_unchecked(old_len, align), new_len)
        }
    };
    if ptr.is_null() {
        // Out of memory (the host's memory cap): the host reports which limit.
        core::arch::wasm32::unreachable();
    }
    ptr
}

/// A panic is a bug in this component: its message goes to the host's log
/// (the host shows it in the crash report), then the call traps. It is
/// written into a fixed buffer, as a panic may come from a failed allocation.
#[cfg(not(test))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    use core::fmt::Write as _;
    struct Truncating {
        buffer: [u8; 1024],
        len: usize,
    }
    impl core::fmt::Write for Truncating {
        fn write_str(&mut self, text: &str) -> core::fmt::Result {
            let mut take = text.len().min(self.buffer.len() - self.len);
            while !text.is_char_boundary(take) {
                take -= 1;
            }
            self.buffer[self.len..self.len + take].copy_from_slice(&text.as_bytes()[..take]);
            self.len += take;
            Ok(())
        }
    }
    let mut message = Truncating { buffer: [0; 1024], len: 0 };
    let _ = write!(message, "panicked: {info}");
    log(Level::Error, core::str::from_utf8(&message.buffer[..message.len]).unwrap_or("panicked"));
    core::arch::wasm32::unreachable()
}
