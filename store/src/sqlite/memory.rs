//! SQLite's memory from the process's allocator.
//!
//! SQLite allocates with the C library's `malloc` unless told otherwise, and it does so
//! constantly on the write path: a savepoint's journal is kept in 1 KiB chunks, so every
//! page a grouped transaction changes costs several `malloc`/`free` pairs. Under load
//! glibc's allocator was about a twentieth of the server's CPU. Handing SQLite the Rust
//! global allocator puts those allocations in the process's allocator (jemalloc in the
//! `ticketing` binary, with its per-thread caches) like every other.

use std::alloc::{alloc, dealloc, realloc, Layout};
use std::ffi::{c_int, c_void};
use std::sync::Once;

use rusqlite::ffi;

/// SQLite asks for 8-byte alignment; 16 keeps the header from misaligning anything.
const ALIGN: usize = 16;
/// Room before each block for its size (SQLite asks a block's size back).
const HEADER: usize = 16;

/// Install the allocator, once per process, before the first connection opens.
/// Configuring SQLite after it initialised is refused (`SQLITE_MISUSE`): SQLite then
/// keeps its default allocator, which is slower, not wrong.
pub(crate) fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let methods = ffi::sqlite3_mem_methods {
            xMalloc: Some(x_malloc),
            xFree: Some(x_free),
            xRealloc: Some(x_realloc),
            xSize: Some(x_size),
            xRoundup: Some(x_roundup),
            xInit: Some(x_init),
            xShutdown: Some(x_shutdown),
            pAppData: std::ptr::null_mut(),
        };
        // SAFETY: `sqlite3_config` must not run beside any other SQLite call; every
        // connection of this process is opened by the store, after this `Once`. SQLite
        // copies the methods; the functions live as long as the process.
        let rc = unsafe {
            ffi::sqlite3_config(
                ffi::SQLITE_CONFIG_MALLOC,
                &methods as *const ffi::sqlite3_mem_methods,
            )
        };
        if rc != ffi::SQLITE_OK {
            tracing::debug!(rc, "SQLite keeps its own allocator (it was already in use)");
        }
    });
}

fn layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(HEADER)?, ALIGN).ok()
}

/// The block SQLite was given, back to the allocation and its recorded size.
///
/// # Safety
/// `p` must be a non-null pointer returned by [`x_malloc`] or [`x_realloc`].
unsafe fn base_of(p: *mut c_void) -> (*mut u8, usize) {
    // SAFETY (caller): `p` is HEADER bytes into an allocation that starts with its size.
    unsafe {
        let base = p.cast::<u8>().sub(HEADER);
        (base, base.cast::<usize>().read())
    }
}

unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
    let Some(layout) = usize::try_from(n).ok().and_then(layout) else {
        return std::ptr::null_mut();
    };
    // SAFETY: the layout's size is at least HEADER, never zero; the size is written
    // into the allocation's first bytes, which are aligned for a usize.
    unsafe {
        let base = alloc(layout);
        if base.is_null() {
            return std::ptr::null_mut();
        }
        base.cast::<usize>().write(n as usize);
        base.add(HEADER).cast()
    }
}

unsafe extern "C" fn x_free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    // SAFETY: SQLite frees only what this allocator gave it, with the layout it was
    // allocated with (rebuilt from the recorded size).
    unsafe {
        let (base, size) = base_of(p);
        if let Some(layout) = layout(size) {
            dealloc(base, layout);
        }
    }
}

unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    if p.is_null() {
        // SAFETY: as `x_malloc`.
        return unsafe { x_malloc(n) };
    }
    let Some(new_size) = usize::try_from(n).ok() else {
        return std::ptr::null_mut();
    };
    if layout(new_size).is_none() {
        return std::ptr::null_mut();
    }
    // SAFETY: `p` came from this allocator; `realloc` gets the block's own layout and
    // a non-zero new size that forms a valid layout with the same alignment (checked
    // above); the size is recorded again in the (possibly moved) block.
    unsafe {
        let (base, size) = base_of(p);
        let Some(old) = layout(size) else {
            return std::ptr::null_mut();
        };
        let moved = realloc(base, old, new_size + HEADER);
        if moved.is_null() {
            return std::ptr::null_mut();
        }
        moved.cast::<usize>().write(new_size);
        moved.add(HEADER).cast()
    }
}

unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
    if p.is_null() {
        return 0;
    }
    // SAFETY: `p` came from this allocator.
    let (_, size) = unsafe { base_of(p) };
    c_int::try_from(size).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn x_roundup(n: c_int) -> c_int {
    // Multiples of 8, as SQLite's own allocator does.
    n.saturating_add(7) & !7
}

unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_shutdown(_: *mut c_void) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_keep_their_size_and_contents_across_reallocation() {
        // SAFETY: the methods are used as SQLite uses them: every block freed once,
        // written only within its size.
        unsafe {
            assert!(x_malloc(-1).is_null());
            let p = x_malloc(24).cast::<u8>();
            assert!(!p.is_null());
            assert_eq!(p as usize % 8, 0, "aligned for SQLite");
            assert_eq!(x_size(p.cast()), 24);
            for i in 0..24 {
                p.add(i).write(i as u8);
            }
            let q = x_realloc(p.cast(), 5000).cast::<u8>();
            assert_eq!(x_size(q.cast()), 5000);
            assert!((0..24).all(|i| q.add(i).read() == i as u8));
            let r = x_realloc(q.cast(), 10).cast::<u8>();
            assert_eq!(x_size(r.cast()), 10);
            assert!((0..10).all(|i| r.add(i).read() == i as u8));
            x_free(r.cast());
            x_free(std::ptr::null_mut());
            assert_eq!(x_size(std::ptr::null_mut()), 0);
            assert_eq!((x_roundup(1), x_roundup(8), x_roundup(9)), (8, 8, 16));
        }
    }
}
