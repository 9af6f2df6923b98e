//! The guest runtime: a panic hook and an out-of-memory guard for the sandbox.
//!
//! The host gives plugins no stderr and no environment. std's default panic hook reads the
//! environment (`RUST_BACKTRACE`) and writes to stderr, and the default allocation-failure
//! handler writes to stderr: both would trap somewhere confusing. Instead the first call into
//! the plugin installs a hook that reports through the host log, and the allocator logs and
//! traps with `unreachable` when memory runs out.

/// Installs the panic hook once (no-op off wasm32, where std's hook works fine).
pub(crate) fn init() {
    #[cfg(target_arch = "wasm32")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| std::panic::set_hook(Box::new(report_panic)));
    }
}

#[cfg(target_arch = "wasm32")]
fn report_panic(info: &std::panic::PanicHookInfo<'_>) {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("Box<dyn Any>");
    let line = match info.location() {
        Some(loc) => format!(
            "plugin panicked at {}:{}:{}: {message}",
            loc.file(),
            loc.line(),
            loc.column()
        ),
        None => format!("plugin panicked: {message}"),
    };
    crate::log::error(&line);
}

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod oom {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::fmt::Write;

    use crate::small_blocks::SmallBlocks;

    /// Small blocks from free lists, the rest from the system allocator; a failed allocation
    /// logs and traps instead of going through std's handler (which writes to the missing
    /// stderr).
    struct TrapOnOom(SmallBlocks<System>);

    // SAFETY: a wasm32-wasip2 instance runs a single thread.
    unsafe impl Sync for TrapOnOom {}

    #[global_allocator]
    static ALLOCATOR: TrapOnOom = TrapOnOom(SmallBlocks::new(System));

    // SAFETY: forwards to `SmallBlocks` unchanged; only the failure path differs, and it
    // never returns.
    unsafe impl GlobalAlloc for TrapOnOom {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let ptr = unsafe { self.0.alloc(layout) };
            if ptr.is_null() {
                out_of_memory(layout.size());
            }
            ptr
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let ptr = unsafe { self.0.alloc_zeroed(layout) };
            if ptr.is_null() {
                out_of_memory(layout.size());
            }
            ptr
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { self.0.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let new = unsafe { self.0.realloc(ptr, layout, new_size) };
            if new.is_null() {
                out_of_memory(new_size);
            }
            new
        }
    }

    /// A message built on the stack: the heap is exactly what just failed.
    struct StackLine {
        buf: [u8; 96],
        len: usize,
    }

    impl Write for StackLine {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let n = s.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
            self.len += n;
            Ok(())
        }
    }

    #[cold]
    fn out_of_memory(size: usize) -> ! {
        let mut line = StackLine {
            buf: [0; 96],
            len: 0,
        };
        let _ = write!(line, "plugin out of memory: allocating {size} bytes failed");
        let message = std::str::from_utf8(&line.buf[..line.len]).unwrap_or("plugin out of memory");
        crate::wit::portico::plugin0_2_0::host::log(
            crate::wit::portico::plugin0_2_0::host::Level::Error,
            message,
        );
        core::arch::wasm32::unreachable()
    }
}
