//! The gathering: what a log handle holds and the rules for what it may hold (the
//! module's documentation says why they are safe). No raw pointer is followed here; the
//! VFS methods around it (`gathered_log.rs`) are where SQLite's handles are.

use std::ffi::c_int;
use std::fs::File;
use std::os::unix::fs::FileExt;

use rusqlite::ffi;

/// The log's own header, before its first frame.
pub(super) const LOG_HEADER: i64 = 32;
/// A log frame's header.
const FRAME_HEADER: usize = 24;
/// The page size gathered: SQLite's default, which the store never changes. A frame is
/// recognised by its size and offset, so a log of other pages is written through.
pub(super) const PAGE: usize = 4096;
pub(super) const FRAME: i64 = (FRAME_HEADER + PAGE) as i64;
/// Write out what is held past this many bytes, whatever the transaction (a bulk load).
const MAX_HELD: usize = 1 << 20;
/// Capacity kept between commits; a larger buffer goes back to the allocator.
const KEEP: usize = 256 << 10;

/// A log file: the default VFS's file, placed after this header in SQLite's allocation.
#[repr(C)]
pub(super) struct LogFile {
    pub(super) base: ffi::sqlite3_file,
    pub(super) real: *mut ffi::sqlite3_file,
    /// The log, opened again for gathered writes; none: nothing is gathered.
    pub(super) out: Option<File>,
    pub(super) held: Vec<u8>,
    /// The file offset of `held[0]`.
    pub(super) start: i64,
    pub(super) frame: Frame,
    /// The end of the frames this handle wrote or holds since it last wrote the log's
    /// header: a frame header below it rewrites a frame, it never appends one.
    pub(super) frontier: i64,
    /// Where frames dropped by a failed write began: nothing may build on them.
    pub(super) lost: Option<i64>,
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Frame {
    /// No frame half-written.
    Between,
    /// A frame header was gathered; its page comes next. `commit`: the frame ends a
    /// transaction.
    Header { commit: bool },
}

/// Is a write of `len` bytes at `offset` a frame's header?
fn frame_header(len: usize, offset: i64) -> bool {
    len == FRAME_HEADER && offset >= LOG_HEADER && (offset - LOG_HEADER) % FRAME == 0
}

impl LogFile {
    /// A log handle with `methods`, over the default VFS's file `real`, gathering into
    /// `out` (none: everything is written through).
    pub(super) fn new(
        methods: &'static ffi::sqlite3_io_methods,
        real: *mut ffi::sqlite3_file,
        out: Option<File>,
    ) -> LogFile {
        LogFile {
            base: ffi::sqlite3_file { pMethods: methods },
            real,
            out,
            held: Vec::new(),
            start: 0,
            frame: Frame::Between,
            frontier: 0,
            lost: None,
        }
    }

    /// Write out what is held, in one call. On failure the frames are lost: marked so,
    /// so that no commit builds on them.
    pub(super) fn flush(&mut self) -> c_int {
        if self.held.is_empty() {
            return ffi::SQLITE_OK;
        }
        let written = match &self.out {
            Some(out) => out.write_all_at(&self.held, self.start as u64),
            None => Err(std::io::Error::other("no descriptor")),
        };
        #[cfg(test)]
        super::tests::WRITES.with(|w| w.set(w.get() + 1));
        let rc = match written {
            Ok(()) => ffi::SQLITE_OK,
            Err(err) => {
                self.lost = Some(self.lost.map_or(self.start, |at| at.min(self.start)));
                tracing::warn!(error = %err, "SQLite log frames could not be written");
                if err.kind() == std::io::ErrorKind::StorageFull {
                    ffi::SQLITE_FULL
                } else {
                    ffi::SQLITE_IOERR_WRITE
                }
            }
        };
        self.held.clear();
        if self.held.capacity() > KEEP {
            self.held.shrink_to(KEEP);
        }
        self.frame = Frame::Between;
        rc
    }

    /// After frames were lost: may this write go on? It starts afresh when SQLite writes
    /// the log's header or a frame header at or below the first lost frame (a
    /// transaction begun from a committed point); anything else at or past it fails.
    pub(super) fn may_write(&mut self, len: usize, offset: i64) -> bool {
        let Some(from) = self.lost else { return true };
        if offset < LOG_HEADER || (frame_header(len, offset) && offset <= from) {
            self.lost = None;
            return true;
        }
        offset < from
    }

    /// Can `len` bytes at `offset` be held, and what frame state follows?
    pub(super) fn gathers(&self, bytes: &[u8], offset: i64) -> Option<Frame> {
        self.out.as_ref()?;
        let end = self.start + self.held.len() as i64;
        match self.frame {
            // An appended frame's header: at or past the frontier, and after what is held
            // (or as the first thing held).
            Frame::Between
                if frame_header(bytes.len(), offset)
                    && offset >= self.frontier
                    && (self.held.is_empty() || offset == end) =>
            {
                // Bytes 4..8: the database's size in pages after a commit frame, 0
                // otherwise.
                let commit = bytes[4..8] != [0, 0, 0, 0];
                Some(Frame::Header { commit })
            }
            // The page of the header just held.
            Frame::Header { .. } if bytes.len() == PAGE && offset == end => Some(Frame::Between),
            _ => None,
        }
    }

    /// Hold `bytes` (written at `offset`, which [`gathers`](Self::gathers) accepted,
    /// answering `next`); written out once they complete a commit frame, or when too
    /// much is held.
    pub(super) fn hold(&mut self, bytes: &[u8], offset: i64, next: Frame) -> c_int {
        if self.held.is_empty() {
            self.start = offset;
        }
        self.held.extend_from_slice(bytes);
        self.advance(bytes.len(), offset);
        let ends_commit = matches!(self.frame, Frame::Header { commit: true });
        self.frame = next;
        if (ends_commit && next == Frame::Between) || self.held.len() >= MAX_HELD {
            return self.flush();
        }
        ffi::SQLITE_OK
    }

    /// Account a write that reached the file or is held.
    pub(super) fn advance(&mut self, len: usize, offset: i64) {
        if offset < LOG_HEADER {
            // The log's header: the log starts over.
            self.frontier = LOG_HEADER;
        } else {
            self.frontier = self.frontier.max(offset + len as i64);
        }
    }

    /// Would a read of `amount` bytes at `offset` reach a frame that never reached the
    /// file?
    pub(super) fn reads_lost(&self, offset: i64, amount: c_int) -> bool {
        self.lost
            .is_some_and(|from| offset + i64::from(amount) > from)
    }

    /// Account the file truncated to `size`.
    pub(super) fn truncated(&mut self, size: i64) {
        self.frontier = self.frontier.min(size);
        if self.lost.is_some_and(|from| from >= size) {
            self.lost = None;
        }
    }
}
