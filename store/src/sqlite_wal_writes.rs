//! A commit's write-ahead log frames in one `pwrite`.
//!
//! SQLite appends a commit to the log frame by frame, and each frame as two writes: its
//! 24-byte header, then its page. Under the order load that was two `pwrite` calls per
//! page changed, ~19 per order, and the file system's per-call work (a folio looked up,
//! locked and dirtied for each, three per frame since frames straddle pages) was the
//! largest single cost of the server: `pwrite` 17% of its CPU. This VFS is the default
//! one with the log's writes gathered: the frames of a transaction are kept in memory,
//! contiguous, and written in one call once its commit frame is complete — before
//! SQLite goes on to publish the commit in the log's index, so no reader, checkpoint or
//! other connection can ever look for a frame that is not in the file yet.
//!
//! What keeps it safe: only the log is wrapped, and in it only whole frames of 4 KiB
//! pages, recognised by size and offset, are held (the database file is the default VFS's,
//! untouched); anything but an appending write — a read, sync, truncate, size, lock or
//! file control on the log, a write elsewhere, the log's own header — first writes out
//! what is held; a frame is held only while the transaction that writes it has not
//! reached its commit frame (a page SQLite spills from a full cache mid-transaction is
//! invisible to others until the commit, and SQLite reads it back through this file,
//! which writes it out first); and the buffer is bounded. A crash with frames held loses
//! what an uncommitted transaction loses: SQLite's recovery stops at the last frame whose
//! checksum chain is whole, as it does for a log cut short by the kernel.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

use rusqlite::ffi;

const VFS_NAME: &CStr = c"ticketing-gathered-log";
/// The name connections open with.
pub(crate) const VFS: &str = match VFS_NAME.to_str() {
    Ok(name) => name,
    Err(_) => panic!("the VFS name is UTF-8"),
};

/// The log's own header, before its first frame.
const LOG_HEADER: i64 = 32;
/// A log frame's header.
const FRAME_HEADER: usize = 24;
/// The page size gathered: SQLite's default, which the store never changes. A frame is
/// recognised by its size and offset, so a log of other pages is written through.
const PAGE: usize = 4096;
const FRAME: i64 = (FRAME_HEADER + PAGE) as i64;
/// Write out what is held past this many bytes, whatever the transaction (a bulk load).
const MAX_HELD: usize = 1 << 20;
/// Largest write handed to the default VFS: its `pwrite` wrapper keeps only the low 17
/// bits of a length (writes SQLite makes itself are a page or a frame at most).
const MAX_WRITE: usize = 0x1_f000;
/// Capacity kept between commits; a larger buffer goes back to the allocator.
const KEEP: usize = 256 << 10;

/// Register the VFS, once per process; whether connections can use it (a failure leaves
/// them on the default VFS, slower, not wrong).
pub(crate) fn install() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| {
        // SAFETY: `sqlite3_vfs_find(NULL)` returns the default VFS, which lives as long
        // as the process. The copy is leaked, so it does too, as SQLite requires.
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

/// A log file: the default VFS's file, placed after this header in SQLite's allocation.
#[repr(C)]
struct LogFile {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    held: Vec<u8>,
    /// The file offset of `held[0]`.
    start: i64,
    frame: Frame,
}

#[derive(Clone, Copy, PartialEq)]
enum Frame {
    /// No frame half-written.
    Between,
    /// A frame header was written; its page comes next. `commit`: the frame ends a
    /// transaction.
    Header { commit: bool },
}

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
        return real_open(*real_vfs, name, file, flags, out_flags);
    }
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
    file.cast::<LogFile>().write(LogFile {
        base: ffi::sqlite3_file {
            pMethods: &LOG_METHODS,
        },
        real,
        held: Vec::new(),
        start: 0,
        frame: Frame::Between,
    });
    ffi::SQLITE_OK
}

/// The log file behind SQLite's handle, and its default-VFS file and methods.
///
/// # Safety
/// `file` must be a handle [`open`] opened as a log and not yet closed.
unsafe fn parts<'a>(
    file: *mut ffi::sqlite3_file,
) -> (
    &'a mut LogFile,
    *mut ffi::sqlite3_file,
    &'a ffi::sqlite3_io_methods,
) {
    let log = &mut *file.cast::<LogFile>();
    let real = log.real;
    (log, real, &*(*real).pMethods)
}

impl LogFile {
    /// Write out what is held: one call, or pieces of [`MAX_WRITE`] for a bulk load.
    unsafe fn flush(&mut self) -> c_int {
        if self.held.is_empty() {
            return ffi::SQLITE_OK;
        }
        let Some(write) = (*(*self.real).pMethods).xWrite else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let mut rc = ffi::SQLITE_OK;
        let mut offset = self.start;
        for chunk in self.held.chunks(MAX_WRITE) {
            rc = write(
                self.real,
                chunk.as_ptr().cast(),
                chunk.len() as c_int,
                offset,
            );
            #[cfg(test)]
            tests::WRITES.with(|w| w.set(w.get() + 1));
            if rc != ffi::SQLITE_OK {
                break;
            }
            offset += chunk.len() as i64;
        }
        // Written or failed (SQLite then rolls the transaction back and writes its frames
        // again): held no more either way.
        self.held.clear();
        if self.held.capacity() > KEEP {
            self.held.shrink_to(KEEP);
        }
        self.frame = Frame::Between;
        rc
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    let (log, real, methods) = parts(file);
    let flushed = log.flush();
    let closed = methods.xClose.map_or(ffi::SQLITE_OK, |close| close(real));
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
    let bytes = std::slice::from_raw_parts(data.cast::<u8>(), len);
    let end = log.start + log.held.len() as i64;
    let gathered = match log.frame {
        // A frame's header, where a frame starts, after what is held (or as the first
        // thing held): its page comes next.
        Frame::Between
            if len == FRAME_HEADER
                && offset >= LOG_HEADER
                && (offset - LOG_HEADER) % FRAME == 0
                && (log.held.is_empty() || offset == end) =>
        {
            // Bytes 4..8: the database's size in pages after a commit frame, 0 otherwise.
            let commit = bytes[4..8] != [0, 0, 0, 0];
            Some(Frame::Header { commit })
        }
        // The page of the header just held.
        Frame::Header { .. } if len == PAGE && offset == end => Some(Frame::Between),
        _ => None,
    };
    let Some(next) = gathered else {
        // Anything else is written through, after what is held.
        let rc = log.flush();
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        return match methods.xWrite {
            Some(write) => write(real, data, amount, offset),
            None => ffi::SQLITE_IOERR_WRITE,
        };
    };
    if log.held.is_empty() {
        log.start = offset;
    }
    log.held.extend_from_slice(bytes);
    let ends_commit = matches!(log.frame, Frame::Header { commit: true });
    log.frame = next;
    if (ends_commit && next == Frame::Between) || log.held.len() >= MAX_HELD {
        return log.flush();
    }
    ffi::SQLITE_OK
}

/// A method that reads or changes the file: what is held is written first.
macro_rules! after_flush {
    ($name:ident ( $($arg:ident : $ty:ty),* ) => $method:ident) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> c_int {
            let (log, real, methods) = parts(file);
            let rc = log.flush();
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            match methods.$method {
                Some(method) => method(real, $($arg),*),
                None => ffi::SQLITE_NOTFOUND,
            }
        }
    };
}

after_flush!(read(data: *mut c_void, amount: c_int, offset: i64) => xRead);
after_flush!(truncate(size: i64) => xTruncate);
after_flush!(sync(flags: c_int) => xSync);
after_flush!(file_size(size: *mut i64) => xFileSize);
after_flush!(lock(level: c_int) => xLock);
after_flush!(unlock(level: c_int) => xUnlock);
after_flush!(check_reserved_lock(out: *mut c_int) => xCheckReservedLock);
after_flush!(file_control(op: c_int, arg: *mut c_void) => xFileControl);
after_flush!(shm_map(region: c_int, size: c_int, extend: c_int, out: *mut *mut c_void) => xShmMap);
after_flush!(shm_lock(offset: c_int, n: c_int, flags: c_int) => xShmLock);
after_flush!(shm_unmap(delete: c_int) => xShmUnmap);
after_flush!(fetch(offset: i64, amount: c_int, out: *mut *mut c_void) => xFetch);
after_flush!(unfetch(offset: i64, page: *mut c_void) => xUnfetch);

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
    let (log, real, methods) = parts(file);
    let _ = log.flush();
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
mod tests {
    use std::cell::Cell;

    use rusqlite::{Connection, OpenFlags};

    thread_local! {
        /// Writes of gathered frames by this thread.
        pub(super) static WRITES: Cell<u64> = const { Cell::new(0) };
    }

    fn connect(path: &std::path::Path) -> Connection {
        assert!(super::install());
        let conn = Connection::open_with_flags_and_vfs(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            super::VFS,
        )
        .unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0",
        )
        .unwrap();
        conn
    }

    /// Rows `ids`, ~3 KB each (a page apiece, or nearly).
    fn insert(conn: &Connection, ids: std::ops::Range<i64>) {
        let body = "x".repeat(3000);
        for id in ids {
            conn.execute("INSERT INTO t (id, body) VALUES (?1, ?2)", (id, &body))
                .unwrap();
        }
    }

    fn count(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_commit_is_one_write_and_visible_to_every_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gathered.db");
        let writer = connect(&path);
        writer
            .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            .unwrap();
        let reader = connect(&path);
        let plain = Connection::open(&path).unwrap();
        let page: usize = writer
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        assert_eq!(page, super::PAGE, "the page size gathered");
        for round in 0..50 {
            let before = WRITES.with(Cell::get);
            // Many pages in one transaction: one write of gathered frames.
            writer.execute_batch("BEGIN").unwrap();
            insert(&writer, round * 20..(round + 1) * 20);
            writer.execute_batch("COMMIT").unwrap();
            assert_eq!(WRITES.with(Cell::get) - before, 1, "round {round}");
            let expected = (round + 1) * 20;
            assert_eq!(count(&reader), expected);
            assert_eq!(count(&plain), expected);
            if round % 10 == 9 {
                // A checkpoint, then a log started over from its header.
                reader
                    .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                    .unwrap();
            }
        }
        // A transaction larger than the page cache spills pages mid-transaction and
        // reads them back, and one larger than what is held is written in pieces; a
        // rolled back one leaves nothing.
        writer
            .execute_batch("PRAGMA cache_size = 10; BEGIN")
            .unwrap();
        insert(&writer, 10_000..10_500);
        assert_eq!(count(&writer), 1000 + 500);
        writer.execute_batch("ROLLBACK").unwrap();
        assert_eq!(count(&plain), 1000);
        writer.execute_batch("BEGIN").unwrap();
        insert(&writer, 20_000..20_500);
        writer.execute_batch("COMMIT").unwrap();
        assert_eq!(count(&reader), 1500);
        let check: String = plain
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        drop((writer, reader, plain));
        // Reopened: everything committed is there.
        assert_eq!(count(&connect(&path)), 1500);
    }
}
