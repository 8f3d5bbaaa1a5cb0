//! A VFS for the writer's connection that hands each commit's WAL frames to the kernel in one
//! write instead of two per frame.
//!
//! SQLite writes a WAL frame as two `pwrite`s, its 24-byte header and then the page: a commit
//! of 35 pages made 70 system calls, each with the kernel's per-write work. This VFS wraps the
//! default one. Files other than WALs are the default VFS's own files, untouched. A WAL's
//! writes that follow one another in the file are gathered in memory and written as one
//! before anything that must see them: a sync, a read, a truncation, a size query, a file
//! control, a memory map, a close, or a write elsewhere in the file.
//!
//! Durability is unchanged: at `synchronous = FULL` SQLite syncs the WAL before a commit
//! returns, and the gathered frames are written before that sync. Other connections read only
//! frames the WAL index lists as committed, and SQLite lists them after that sync; so a
//! connection opened with this VFS must run at `synchronous = FULL` (the writer does; at
//! `NORMAL` a commit does not sync and readers could look for frames still held here).

// A VFS is a table of C functions SQLite calls with raw pointers: this module is the crate's
// only unsafe code, each block with the reason it holds.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use rusqlite::ffi;

/// Frames gathered beyond this are written at once: one of the writer's commits is about
/// 150 KiB; a large transaction (a migration's) is not held whole.
const MAX_GATHERED: usize = 1 << 20;

/// The most one write hands the wrapped VFS: the default (unix) VFS writes at most 128 KiB
/// less a byte at a time (it masks the length), and SQLite's own writes are never larger than
/// a frame. A multiple of the page size under that limit.
const MAX_WRITE: usize = 124 << 10;

/// The VFS the writer opens its connection with, registered with SQLite on first use.
pub fn writer_vfs() -> Result<&'static GatheringVfs, String> {
    static VFS: OnceLock<Result<&'static GatheringVfs, String>> = OnceLock::new();
    VFS.get_or_init(|| GatheringVfs::register(c"courier-wal-writes"))
        .clone()
}

/// A registered VFS wrapping the default one. SQLite keeps a pointer to it, so it lives as
/// long as the process.
#[repr(C)]
pub struct GatheringVfs {
    /// First, so the pointer SQLite passes to `xOpen` is this struct's. SQLite links it into
    /// its list of VFSes (`pNext`); Rust never reads it after registration.
    base: UnsafeCell<ffi::sqlite3_vfs>,
    name: &'static CStr,
    inner: *mut ffi::sqlite3_vfs,
    wal_writes: AtomicU64,
}

// SAFETY: `inner` is a registered VFS, which SQLite shares between threads itself; `base` is
// SQLite's to change, under its own mutex; the rest is immutable or atomic.
unsafe impl Send for GatheringVfs {}
unsafe impl Sync for GatheringVfs {}

impl GatheringVfs {
    /// Registers a VFS named `name` wrapping the default one (not made the default).
    pub(super) fn register(name: &'static CStr) -> Result<&'static Self, String> {
        // SAFETY: initializes SQLite if needed and answers the default VFS or null.
        let inner = unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) };
        if inner.is_null() {
            return Err("SQLite has no default VFS to wrap".into());
        }
        // A copy of the wrapped VFS, whose methods but `xOpen` are called as they are (they
        // read nothing of the struct but `mxPathname` and `pAppData`, copied with it).
        // SAFETY: `inner` points to a registered VFS, which SQLite never frees.
        let mut base = unsafe { *inner };
        let out_of_range = |_| "SQLite's default VFS gives its files a size out of range";
        let inner_file_size = usize::try_from(base.szOsFile).map_err(out_of_range)?;
        base.szOsFile =
            c_int::try_from(GatheringFile::INNER_OFFSET + inner_file_size).map_err(out_of_range)?;
        base.zName = name.as_ptr();
        base.pNext = std::ptr::null_mut();
        base.xOpen = Some(open);
        let vfs: &'static Self = Box::leak(Box::new(Self {
            base: UnsafeCell::new(base),
            name,
            inner,
            wal_writes: AtomicU64::new(0),
        }));
        // SAFETY: `vfs` is complete and never freed; 0 keeps the default VFS the default.
        let code = unsafe { ffi::sqlite3_vfs_register(vfs.base.get(), 0) };
        if code != ffi::SQLITE_OK {
            let name = name.to_string_lossy();
            return Err(format!(
                "SQLite refused to register the VFS {name} (code {code})"
            ));
        }
        Ok(vfs)
    }

    /// The name connections open it by.
    pub fn name(&self) -> &'static CStr {
        self.name
    }

    /// Writes made to WAL files so far, all files of this VFS together.
    #[cfg(test)]
    pub fn wal_writes(&self) -> u64 {
        self.wal_writes.load(Relaxed)
    }
}

/// The wrapped file's method `$name`. The wrapped VFS is the default one (unix), whose files
/// have every method of version 3; one without would stop the process here.
macro_rules! inner_method {
    ($file:expr, $name:ident) => {
        (*(*$file.inner).pMethods)
            .$name
            .expect(concat!("the wrapped VFS has ", stringify!($name)))
    };
}

/// A WAL file of the gathering VFS: the wrapped VFS's file lives right after this struct, in
/// the memory SQLite allocated (`szOsFile`).
#[repr(C)]
struct GatheringFile {
    /// First, so the pointer SQLite passes to every method is this struct's.
    base: ffi::sqlite3_file,
    inner: *mut ffi::sqlite3_file,
    vfs: &'static GatheringVfs,
    /// Bytes not yet written, meant for the file at `gathered_at`.
    gathered: Vec<u8>,
    gathered_at: i64,
}

impl GatheringFile {
    /// Where the wrapped file starts: after this struct, aligned as SQLite aligns its files.
    const INNER_OFFSET: usize = std::mem::size_of::<Self>().next_multiple_of(8);

    /// Writes what was gathered. What failed to be written is dropped with its error: SQLite
    /// rolls the transaction back and writes its frames again.
    fn write_gathered(&mut self) -> c_int {
        let mut code = ffi::SQLITE_OK;
        let mut offset = self.gathered_at;
        for chunk in self.gathered.chunks(MAX_WRITE) {
            // SAFETY: `inner` is an open file of the wrapped VFS; `chunk` outlives the call and
            // is at most MAX_WRITE bytes.
            code = unsafe {
                inner_method!(self, xWrite)(
                    self.inner,
                    chunk.as_ptr().cast(),
                    chunk.len() as c_int,
                    offset,
                )
            };
            self.vfs.wal_writes.fetch_add(1, Relaxed);
            if code != ffi::SQLITE_OK {
                break;
            }
            offset += chunk.len() as i64;
        }
        self.gathered.clear();
        code
    }

    /// Gathers a write that follows the gathered bytes in the file, else writes those first.
    fn gather(&mut self, data: &[u8], offset: i64) -> c_int {
        let follows = self.gathered_at + self.gathered.len() as i64 == offset;
        if !follows || self.gathered.len() + data.len() > MAX_GATHERED {
            let code = self.write_gathered();
            if code != ffi::SQLITE_OK {
                return code;
            }
            self.gathered_at = offset;
        }
        self.gathered.extend_from_slice(data);
        if self.gathered.len() > MAX_GATHERED {
            // One write larger than the limit (SQLite makes none): not held.
            return self.write_gathered();
        }
        ffi::SQLITE_OK
    }
}

/// Opens a file of the wrapped VFS; a WAL is wrapped in a `GatheringFile`.
unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite passes the VFS it was registered as, which is a `GatheringVfs`.
    let vfs: &'static GatheringVfs = unsafe { &*vfs.cast::<GatheringVfs>() };
    let inner_vfs = vfs.inner;
    // SAFETY (this block): SQLite passes `file` with `szOsFile` bytes, which hold a
    // `GatheringFile` followed by the wrapped VFS's file.
    unsafe {
        let open_inner = (*inner_vfs).xOpen.expect("a VFS opens files");
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            // Not a WAL: the wrapped VFS's own file, in the memory SQLite gave.
            return open_inner(inner_vfs, name, file, flags, out_flags);
        }
        let inner = file.cast::<u8>().add(GatheringFile::INNER_OFFSET).cast();
        let code = open_inner(inner_vfs, name, inner, flags, out_flags);
        if code != ffi::SQLITE_OK {
            // A wrapped file left half open is closed here: SQLite closes only files whose
            // methods are set, and it sees this one's unset.
            if !(*inner).pMethods.is_null()
                && let Some(close_inner) = (*(*inner).pMethods).xClose
            {
                close_inner(inner);
            }
            (*file).pMethods = std::ptr::null();
            return code;
        }
        file.cast::<GatheringFile>().write(GatheringFile {
            base: ffi::sqlite3_file {
                pMethods: &GATHERING_METHODS,
            },
            inner,
            vfs,
            gathered: Vec::new(),
            gathered_at: 0,
        });
        ffi::SQLITE_OK
    }
}

/// The `GatheringFile` SQLite passes to a method.
///
/// # Safety
/// `file` must be a file this VFS opened as a WAL and has not closed.
unsafe fn gathering<'a>(file: *mut ffi::sqlite3_file) -> &'a mut GatheringFile {
    unsafe { &mut *file.cast::<GatheringFile>() }
}

/// A method that writes what was gathered, then calls the wrapped file's.
macro_rules! after_gathered {
    ($function:ident => $name:ident ( $($arg:ident : $type:ty),* ) -> c_int) => {
        unsafe extern "C" fn $function(file: *mut ffi::sqlite3_file, $($arg: $type),*) -> c_int {
            // SAFETY: SQLite calls the methods of an open file only.
            let file = unsafe { gathering(file) };
            let code = file.write_gathered();
            if code != ffi::SQLITE_OK {
                return code;
            }
            unsafe { inner_method!(file, $name)(file.inner, $($arg),*) }
        }
    };
}

/// A method that calls the wrapped file's: nothing gathered concerns it.
macro_rules! passed_on {
    ($function:ident => $name:ident ( $($arg:ident : $type:ty),* ) -> $ret:ty) => {
        unsafe extern "C" fn $function(file: *mut ffi::sqlite3_file, $($arg: $type),*) -> $ret {
            // SAFETY: SQLite calls the methods of an open file only.
            let file = unsafe { gathering(file) };
            unsafe { inner_method!(file, $name)(file.inner, $($arg),*) }
        }
    };
}

after_gathered!(read => xRead(buffer: *mut c_void, amount: c_int, offset: i64) -> c_int);
after_gathered!(truncate => xTruncate(size: i64) -> c_int);
after_gathered!(sync => xSync(flags: c_int) -> c_int);
after_gathered!(file_size => xFileSize(size: *mut i64) -> c_int);
after_gathered!(file_control => xFileControl(op: c_int, argument: *mut c_void) -> c_int);
after_gathered!(fetch => xFetch(offset: i64, amount: c_int, pointer: *mut *mut c_void) -> c_int);
passed_on!(lock => xLock(level: c_int) -> c_int);
passed_on!(unlock => xUnlock(level: c_int) -> c_int);
passed_on!(check_reserved_lock => xCheckReservedLock(reserved: *mut c_int) -> c_int);
passed_on!(sector_size => xSectorSize() -> c_int);
passed_on!(device_characteristics => xDeviceCharacteristics() -> c_int);
passed_on!(shm_map => xShmMap(
    region: c_int, size: c_int, extend: c_int, pointer: *mut *mut c_void
) -> c_int);
passed_on!(shm_lock => xShmLock(offset: c_int, count: c_int, flags: c_int) -> c_int);
passed_on!(shm_barrier => xShmBarrier() -> ());
passed_on!(shm_unmap => xShmUnmap(delete: c_int) -> c_int);
passed_on!(unfetch => xUnfetch(offset: i64, pointer: *mut c_void) -> c_int);

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: SQLite calls the methods of an open file, with `amount` readable bytes.
    let file = unsafe { gathering(file) };
    let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), amount as usize) };
    file.gather(bytes, offset)
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes an open file once; after this it is not ours to read.
    let gathering_file = unsafe { gathering(file) };
    let written = gathering_file.write_gathered();
    let closed = unsafe { inner_method!(gathering_file, xClose)(gathering_file.inner) };
    unsafe { std::ptr::drop_in_place(file.cast::<GatheringFile>()) };
    if written != ffi::SQLITE_OK {
        written
    } else {
        closed
    }
}

/// Version 3: the wrapped file's shared memory and memory maps are passed on.
static GATHERING_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
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
    use rusqlite::{Connection, OpenFlags, params};

    use super::*;

    /// A database `t.db` with a table `t`, opened through a VFS of the test's own (named
    /// `vfs_name`, so its count of writes is the test's alone) as the writer opens its own.
    struct Database {
        vfs: &'static GatheringVfs,
        dir: tempfile::TempDir,
        connection: Connection,
    }

    impl Database {
        fn create(vfs_name: &'static CStr) -> Self {
            let vfs = GatheringVfs::register(vfs_name).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let flags = OpenFlags::default();
            let connection =
                Connection::open_with_flags_and_vfs(dir.path().join("t.db"), flags, vfs.name())
                    .unwrap();
            // The first commit also writes the WAL's header, and syncs it apart.
            connection
                .execute_batch(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA wal_autocheckpoint = 0; \
                     CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)",
                )
                .unwrap();
            Self {
                vfs,
                dir,
                connection,
            }
        }
    }

    fn insert_rows(connection: &Connection, from: i64, count: i64) {
        let mut insert = connection
            .prepare_cached("INSERT INTO t (id, body) VALUES (?, ?)")
            .unwrap();
        for id in from..from + count {
            insert.execute(params![id, vec![id as u8; 1000]]).unwrap();
        }
    }

    fn wal_size(wal: &std::path::Path) -> u64 {
        std::fs::metadata(wal).unwrap().len()
    }

    fn count(connection: &Connection) -> i64 {
        connection
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn a_commit_reaches_the_wal_in_one_write() {
        let Database {
            vfs,
            dir,
            connection,
        } = Database::create(c"courier-wal-writes-test-one-write");
        let wal = dir.path().join("t.db-wal");
        // Commits `count` rows; answers the bytes it added to the WAL and the writes it took.
        let commit = |from, count| {
            let (size, writes) = (wal_size(&wal), vfs.wal_writes());
            connection.execute_batch("BEGIN").unwrap();
            insert_rows(&connection, from, count);
            connection.execute_batch("COMMIT").unwrap();
            (wal_size(&wal) - size, vfs.wal_writes() - writes)
        };

        let (bytes, writes) = commit(0, 100);
        // A frame is a 24-byte header and a page of 4 KiB.
        let frames = bytes / (24 + 4096);
        assert!(frames >= 25, "a commit of 100 KB wrote {frames} frames");
        assert_eq!(writes, 1, "{frames} frames");

        // Larger commits go in writes of MAX_WRITE bytes, which the wrapped VFS takes whole.
        let (bytes, writes) = commit(100, 600);
        assert!(bytes > 4 * MAX_WRITE as u64, "{bytes} bytes");
        assert_eq!(writes, bytes.div_ceil(MAX_WRITE as u64));
        assert_eq!(
            count(&Connection::open(dir.path().join("t.db")).unwrap()),
            700
        );
    }

    /// Small page caches spill a transaction's pages into the WAL before its commit, and SQLite
    /// reads them back from it; a rollback leaves frames that later ones overwrite.
    #[test]
    fn readers_spills_rollbacks_and_a_reopened_database_see_exactly_the_commits() {
        let Database {
            dir,
            connection: writer,
            ..
        } = Database::create(c"courier-wal-writes-test-spills");
        let path = dir.path().join("t.db");
        writer.execute_batch("PRAGMA cache_size = 8").unwrap();
        let reader = Connection::open(&path).unwrap();
        let mut committed = 0;
        for round in 0..30_i64 {
            writer.execute_batch("BEGIN").unwrap();
            insert_rows(&writer, round * 1000, 60);
            // Read back rows whose pages the small cache spilled to the WAL.
            let first: Vec<u8> = writer
                .query_row("SELECT body FROM t WHERE id = ?", [round * 1000], |row| {
                    row.get(0)
                })
                .unwrap();
            assert_eq!(first, vec![(round * 1000) as u8; 1000]);
            if round % 3 == 2 {
                writer.execute_batch("ROLLBACK").unwrap();
            } else {
                writer.execute_batch("COMMIT").unwrap();
                committed += 60;
            }
            assert_eq!(count(&reader), committed, "round {round}");
            if round % 10 == 9 {
                // Lets the next commit start the WAL over, from its first frame.
                reader
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                    .unwrap();
            }
        }
        drop(reader);
        // Not closed: the WAL is what a process killed now would leave.
        std::mem::forget(writer);

        let copy = dir.path().join("copy.db");
        std::fs::copy(&path, &copy).unwrap();
        std::fs::copy(dir.path().join("t.db-wal"), dir.path().join("copy.db-wal")).unwrap();
        let reopened = Connection::open(&copy).unwrap();
        assert_eq!(count(&reopened), committed);
        let check: String = reopened
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }
}
