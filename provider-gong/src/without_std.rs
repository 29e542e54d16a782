//! What std provides a wasm32-wasip2 component, provided here instead:
//! an allocator, the canonical ABI's `cabi_realloc`, and a panic handler.

use core::alloc::{GlobalAlloc, Layout};

use crate::terapi::provider::log::{Level, log};

/// wasi-libc's malloc, as std's `System` allocator uses it on wasm32-wasip2
/// (libc is linked for memcmp and friends anyway). Not the `dlmalloc`
/// crate: that one takes its first heap segment with `memory.grow`, while
/// libc's starts in the initial memory past `__heap_base`, so a call that
/// allocates little never grows memory, and a pooled instance is reset
/// without remapping pages. Measured (`get-user`, interleaved, runs
/// alternating on one machine): overhead over native +50% with the crate,
/// +38% with libc, +44% for the std build before.
struct LibcMalloc;

/// The alignment malloc guarantees on wasm32.
const MALLOC_ALIGN: usize = 8;

unsafe extern "C" {
    fn malloc(size: usize) -> *mut u8;
    fn aligned_alloc(align: usize, size: usize) -> *mut u8;
    fn realloc(ptr: *mut u8, size: usize) -> *mut u8;
    fn free(ptr: *mut u8);
}

// SAFETY: forwards to libc's allocator, which meets GlobalAlloc's contract
// for the alignments it is asked for (malloc's own, or aligned_alloc).
unsafe impl GlobalAlloc for LibcMalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe {
            if layout.align() <= MALLOC_ALIGN && layout.align() <= layout.size() {
                malloc(layout.size())
            } else {
                aligned_alloc(layout.align(), layout.size())
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        unsafe { free(ptr) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe {
            if layout.align() <= MALLOC_ALIGN && layout.align() <= new_size {
                return realloc(ptr, new_size);
            }
            let moved = self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
            if !moved.is_null() {
                core::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            moved
        }
    }
}

#[global_allocator]
static ALLOCATOR: LibcMalloc = LibcMalloc;

/// The host calls this to place arguments (strings, lists) in our memory;
/// what it allocates, the bindings free with the global allocator, so it
/// must be the same one.
///
/// # Safety
/// Called by the component model's canonical ABI with a layout it keeps to.
#[unsafe(no_mangle)]
unsafe extern "C" fn cabi_realloc(old_ptr: *mut u8, old_len: usize, align: usize, new_len: usize) -> *mut u8 {
    let ptr = unsafe {
        if old_len == 0 {
            if new_len == 0 {
                return align as *mut u8;
            }
            ALLOCATOR.alloc(Layout::from_size_align_unchecked(new_len, align))
        } else {
            ALLOCATOR.realloc(old_ptr, Layout::from_size_align_unchecked(old_len, align), new_len)
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
