//! A commit's write-ahead log frames in one `pwrite`.
//!
//! SQLite appends a commit to the log frame by frame, and each frame as two writes: its
//! 24-byte header, then its page. Under the order load that was two `pwrite` calls per
//! page changed, ~19 per order, and the file system's per-call work (a folio looked up,
//! locked and dirtied for each, three per frame since frames straddle pages) was the
//! largest single cost of the server: `pwrite` 17% of its CPU. This VFS is the default
//! one with the log's appends gathered: the frames a transaction appends are kept in
//! memory, contiguous, and written in one call when its commit frame is complete.
//!
//! Why that is safe, from `wal.c` (`walFrames`, `walWriteOneFrame`,
//! `walRewriteChecksums`):
//!
//! - **Only appends are held.** A frame header is gathered only at or past the
//!   *frontier*: the end of every frame this handle has written (or holds) since it last
//!   wrote the log's header. Everything below it is a frame this handle wrote before, so
//!   a header written there is a rewrite — the real checksums `walRewriteChecksums`
//!   writes in place after a transaction that spilled a page and changed it again — and
//!   goes straight through, as does a page rewritten in place. (The defect this rule
//!   fixed: such a rewritten header was taken for an append and held, the commit frame's
//!   last of all, while SQLite published the commit; a kill then lost an acknowledged
//!   transaction, or left a malformed database after a checkpoint.) An append after a
//!   rolled-back spill also lands below the frontier and is written through: slower,
//!   until the log starts over, never wrong.
//! - **A commit is in the file before SQLite publishes it.** The write of the commit
//!   frame's page — the last append of a transaction — writes out everything held before
//!   returning; SQLite moves the WAL index's header (what readers, checkpoints and
//!   recovery go by) only after that write returns, and the checksum rewrites and the
//!   `FULL` sync come after it too. So the only frames ever held are those of a
//!   transaction that has not committed, which no other connection can see.
//! - **This handle's own reads, sizes, syncs and truncations see what is held**: each
//!   writes it out first (SQLite reads back a page it spilled mid-transaction). Locks
//!   and the shared-memory index are taken on the *database* file's handle, never on the
//!   log's, so nothing here depends on them; on the log they go straight through.
//! - **A failed write of what is held fails the transaction.** The frames are gone, so
//!   every later append or read at or past the first of them fails too, until SQLite
//!   starts a transaction from a committed point (a header at or below it) or the log
//!   starts over; the caller sees an I/O error, never a commit with a hole in it.
//!
//! A crash with frames held loses what an uncommitted transaction loses: recovery stops
//! at the last frame whose checksum chain is whole. Gathered bytes are written through a
//! descriptor of this file's own (`pwrite` of any length; the default VFS's write takes
//! what SQLite itself writes, a page or a frame). `--sqlite-gathered-log off` opens
//! connections on the default VFS instead. The crash tests (`tests.rs`) copy the files
//! as a kill leaves them and open the copy afresh.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;

use rusqlite::ffi;

mod gathering;

use gathering::LogFile;

const VFS_NAME: &CStr = c"ticketing-gathered-log";
/// The name connections open with.
pub(crate) const VFS: &str = match VFS_NAME.to_str() {
    Ok(name) => name,
    Err(_) => panic!("the VFS name is UTF-8"),
};

/// Register the VFS, once per process; whether connections can use it (a failure leaves
/// them on the default VFS, slower, not wrong).
pub(crate) fn install() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| {
        // SAFETY: `sqlite3_vfs_find(NULL)` returns the default VFS, which lives as long
        // as the process; reading its struct is reading plain data. The copy is leaked,
        // so it lives as long as the process too, as `sqlite3_vfs_register` requires.
        unsafe {
            let default = ffi::sqlite3_vfs_find(std::ptr::null());
            if default.is_null() {
                return false;
            }
            let _ = REAL.set(Real(default));
            let mut vfs = *default;
            vfs.szOsFile = (real_offset() + (*default).szOsFile as usize) as c_int;
            vfs.pNext = std::ptr::null_mut();
            vfs.zName = VFS_NAME.as_ptr();
            vfs.xOpen = Some(open);
            // Every other method is the default VFS's: they see a copy of its struct,
            // with its `pAppData` and `mxPathname`.
            let vfs = Box::leak(Box::new(vfs));
            let rc = ffi::sqlite3_vfs_register(vfs, 0);
            if rc != ffi::SQLITE_OK {
                tracing::warn!(
                    rc,
                    "SQLite VFS not registered; the log is written frame by frame"
                );
                return false;
            }
            true
        }
    })
}

struct Real(*mut ffi::sqlite3_vfs);
// SAFETY: a VFS is process-wide and SQLite's own methods are thread-safe.
unsafe impl Send for Real {}
unsafe impl Sync for Real {}

static REAL: OnceLock<Real> = OnceLock::new();

const fn real_offset() -> usize {
    let size = std::mem::size_of::<LogFile>();
    size.div_ceil(8) * 8
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let Some(Real(real_vfs)) = REAL.get() else {
        return ffi::SQLITE_ERROR;
    };
    let Some(real_open) = (**real_vfs).xOpen else {
        return ffi::SQLITE_ERROR;
    };
    if flags & ffi::SQLITE_OPEN_WAL == 0 {
        // Not a log: the default VFS's file, in place (the allocation is larger).
        // SAFETY: SQLite's arguments, handed on as they came.
        return real_open(*real_vfs, name, file, flags, out_flags);
    }
    // SAFETY: SQLite allocated `szOsFile` bytes at `file`: this header, padded to
    // `real_offset()`, then room for the default VFS's file.
    let real = file
        .cast::<u8>()
        .add(real_offset())
        .cast::<ffi::sqlite3_file>();
    (*real).pMethods = std::ptr::null();
    let rc = real_open(*real_vfs, name, real, flags, out_flags);
    if rc != ffi::SQLITE_OK || (*real).pMethods.is_null() {
        if !(*real).pMethods.is_null() {
            if let Some(close) = (*(*real).pMethods).xClose {
                close(real);
            }
        }
        // SQLite calls no method of a file whose `pMethods` is null.
        (*file).pMethods = std::ptr::null();
        return if rc == ffi::SQLITE_OK {
            ffi::SQLITE_CANTOPEN
        } else {
            rc
        };
    }
    // The same file, for gathered writes; a log SQLite opened by another name, or one
    // that cannot be opened again, is written frame by frame.
    let out = if name.is_null() {
        None
    } else {
        // SAFETY: a log's name is a NUL-terminated path SQLite keeps while it is open.
        let path = std::ffi::OsStr::from_bytes(CStr::from_ptr(name).to_bytes());
        std::fs::OpenOptions::new().write(true).open(path).ok()
    };
    // SAFETY: the header's bytes are SQLite's allocation, unused until now.
    file.cast::<LogFile>()
        .write(LogFile::new(&LOG_METHODS, real, out));
    ffi::SQLITE_OK
}

/// The log file behind SQLite's handle, and its default-VFS file and methods.
type Parts<'a> = (
    &'a mut LogFile,
    *mut ffi::sqlite3_file,
    &'a ffi::sqlite3_io_methods,
);

/// The [`Parts`] of a log handle.
///
/// # Safety
/// `file` must be a handle [`open`] opened as a log and not yet closed.
unsafe fn parts<'a>(file: *mut ffi::sqlite3_file) -> Parts<'a> {
    // SAFETY: `open` wrote a `LogFile` at `file` and an opened default-VFS file at
    // `real`, whose methods live as long as the process; SQLite calls a file's methods
    // one at a time.
    let log = &mut *file.cast::<LogFile>();
    let real = log.real;
    (log, real, &*(*real).pMethods)
}

/// The [`Parts`] of a log handle once what it holds is written out, for a method that
/// reads or changes the file; `Err`: that write's failure.
///
/// # Safety
/// As for [`parts`].
unsafe fn flushed<'a>(file: *mut ffi::sqlite3_file) -> Result<Parts<'a>, c_int> {
    let (log, real, methods) = parts(file);
    match log.flush() {
        ffi::SQLITE_OK => Ok((log, real, methods)),
        rc => Err(rc),
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    let (log, real, methods) = parts(file);
    let flushed = log.flush();
    let closed = methods.xClose.map_or(ffi::SQLITE_OK, |close| close(real));
    // SAFETY: the `LogFile` `open` wrote; SQLite calls nothing on a closed file.
    std::ptr::drop_in_place(file.cast::<LogFile>());
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        closed
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    let (log, real, methods) = parts(file);
    let Ok(len) = usize::try_from(amount) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    if !log.may_write(len, offset) {
        return ffi::SQLITE_IOERR_WRITE;
    }
    // SAFETY: SQLite passes `amount` readable bytes at `data`.
    let bytes = std::slice::from_raw_parts(data.cast::<u8>(), len);
    let Some(next) = log.gathers(bytes, offset) else {
        // Anything else is written through, after what is held.
        let rc = log.flush();
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        let rc = match methods.xWrite {
            Some(write) => write(real, data, amount, offset),
            None => ffi::SQLITE_IOERR_WRITE,
        };
        if rc == ffi::SQLITE_OK {
            log.advance(len, offset);
        }
        return rc;
    };
    log.hold(bytes, offset, next)
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    data: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    let (log, real, methods) = match flushed(file) {
        Ok(parts) => parts,
        Err(rc) => return rc,
    };
    if log.reads_lost(offset, amount) {
        // A frame that never reached the file.
        return ffi::SQLITE_IOERR_READ;
    }
    match methods.xRead {
        Some(method) => method(real, data, amount, offset),
        None => ffi::SQLITE_IOERR_READ,
    }
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    let (log, real, methods) = match flushed(file) {
        Ok(parts) => parts,
        Err(rc) => return rc,
    };
    let rc = match methods.xTruncate {
        Some(method) => method(real, size),
        None => ffi::SQLITE_IOERR_TRUNCATE,
    };
    if rc == ffi::SQLITE_OK {
        log.truncated(size);
    }
    rc
}

/// A method that reads or changes the file: what is held is written first.
macro_rules! after_flush {
    ($name:ident ( $($arg:ident : $ty:ty),* ) => $method:ident) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> c_int {
            match flushed(file) {
                Ok((_, real, methods)) => match methods.$method {
                    Some(method) => method(real, $($arg),*),
                    None => ffi::SQLITE_NOTFOUND,
                },
                Err(rc) => rc,
            }
        }
    };
}

/// A method that neither reads nor changes the log's bytes, or one SQLite calls on the
/// database file's handle only (locks, the shared-memory index, memory maps): the
/// default VFS's, as is.
macro_rules! through {
    ($name:ident ( $($arg:ident : $ty:ty),* ) => $method:ident) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> c_int {
            let (_, real, methods) = parts(file);
            match methods.$method {
                Some(method) => method(real, $($arg),*),
                None => ffi::SQLITE_NOTFOUND,
            }
        }
    };
}

after_flush!(sync(flags: c_int) => xSync);
after_flush!(file_size(size: *mut i64) => xFileSize);
after_flush!(file_control(op: c_int, arg: *mut c_void) => xFileControl);
through!(lock(level: c_int) => xLock);
through!(unlock(level: c_int) => xUnlock);
through!(check_reserved_lock(out: *mut c_int) => xCheckReservedLock);
through!(shm_map(region: c_int, size: c_int, extend: c_int, out: *mut *mut c_void) => xShmMap);
through!(shm_lock(offset: c_int, n: c_int, flags: c_int) => xShmLock);
through!(shm_unmap(delete: c_int) => xShmUnmap);
through!(fetch(offset: i64, amount: c_int, out: *mut *mut c_void) => xFetch);
through!(unfetch(offset: i64, page: *mut c_void) => xUnfetch);

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    let (_, real, methods) = parts(file);
    methods.xSectorSize.map_or(4096, |method| method(real))
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    let (_, real, methods) = parts(file);
    methods
        .xDeviceCharacteristics
        .map_or(0, |method| method(real))
}

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    let (_, real, methods) = parts(file);
    if let Some(method) = methods.xShmBarrier {
        method(real)
    }
}

static LOG_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

#[cfg(test)]
mod tests;
