//! The SQLite VFS, written directly against `rusqlite::ffi` (V4–V7).
//!
//! Why not a VFS crate: `sqlite-plugin` 0.11 (the maintained one, used by Graft) only
//! forwards SQLITE_FCNTL_PRAGMA from xFileControl, so the batch-atomic-write file controls
//! this design commits on never reach it; it also generates its own bindings with
//! bindgen (libclang at build time) and is tested against another rusqlite. The glue
//! here is one file: every callback converts pointers, catches panics and calls the
//! safe code in `file.rs`.
//!
//! Every callback returns an SQLite result code and never unwinds into SQLite: a panic
//! is caught and becomes SQLITE_IOERR (or SQLITE_ERROR / SQLITE_CANTOPEN).

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::ffi;

use crate::catalog::{at_read_point, read_catalog, validate_name};
use crate::file::{Fail, MainFile, MemFile};
use crate::registry::{LockLevel, RegisteredVfs, VolumeState};

/// A registered `sqlite3_vfs` allocation (owned by the registry).
pub(crate) struct RawVfs(*mut ffi::sqlite3_vfs);

// SAFETY: the pointer is only dereferenced by SQLite (which serialises VFS registration)
// and freed once, by `unregister`, while the registry lock is held.
unsafe impl Send for RawVfs {}

/// What an open `sqlite3_file` is.
enum Handle {
    Main(Box<MainFile>),
    Mem(MemFile),
}

/// The `sqlite3_file` subclass SQLite allocates `szOsFile` bytes for.
#[repr(C)]
struct SixFile {
    base: ffi::sqlite3_file,
    handle: *mut Handle,
}

static IO_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

static VFS_NUMBER_NEXT: AtomicU64 = AtomicU64::new(1);

/// Maximum path name SQLite may build for this VFS.
const PATHNAME_BYTES_MAX: c_int = 512;

/// Registers the VFS of `state` with SQLite if not yet done; returns its name.
pub(crate) fn ensure_registered(state: &Arc<VolumeState>) -> Result<String, i32> {
    let mut slot = state.vfs_slot();
    if let Some(registered) = slot.as_ref() {
        return Ok(registered.name.to_string_lossy().into_owned());
    }
    // SAFETY: sqlite3_initialize is safe to call any number of times from any thread.
    let rc = unsafe { ffi::sqlite3_initialize() };
    if rc != ffi::SQLITE_OK {
        return Err(rc);
    }
    let number = VFS_NUMBER_NEXT.fetch_add(1, Ordering::Relaxed);
    let name = CString::new(format!("sixfold-{number}")).expect("no NUL in name");
    let vfs = Box::new(ffi::sqlite3_vfs {
        iVersion: 2,
        szOsFile: c_int::try_from(size_of::<SixFile>()).expect("small struct"),
        mxPathname: PATHNAME_BYTES_MAX,
        pNext: ptr::null_mut(),
        zName: name.as_ptr(),
        pAppData: Arc::into_raw(state.clone()).cast_mut().cast::<c_void>(),
        xOpen: Some(x_open),
        xDelete: Some(x_delete),
        xAccess: Some(x_access),
        xFullPathname: Some(x_full_pathname),
        xDlOpen: Some(x_dl_open),
        xDlError: Some(x_dl_error),
        xDlSym: Some(x_dl_sym),
        xDlClose: Some(x_dl_close),
        xRandomness: Some(x_randomness),
        xSleep: Some(x_sleep),
        xCurrentTime: Some(x_current_time),
        xGetLastError: Some(x_get_last_error),
        xCurrentTimeInt64: Some(x_current_time_int64),
        xSetSystemCall: None,
        xGetSystemCall: None,
        xNextSystemCall: None,
    });
    let raw = Box::into_raw(vfs);
    // SAFETY: `raw` is a fully initialised sqlite3_vfs that stays allocated (with its
    // name, owned by the registry next to it) until `unregister`; 0 = not the default.
    let rc = unsafe { ffi::sqlite3_vfs_register(raw, 0) };
    if rc != ffi::SQLITE_OK {
        unregister(RegisteredVfs {
            name,
            raw: RawVfs(raw),
        });
        return Err(rc);
    }
    let text = name.to_string_lossy().into_owned();
    *slot = Some(RegisteredVfs {
        name,
        raw: RawVfs(raw),
    });
    Ok(text)
}

/// Unregisters a VFS and frees it; called when its volume no longer exists (so no file
/// of it is open: open files hold the volume).
pub(crate) fn unregister(vfs: RegisteredVfs) {
    let raw = vfs.raw.0;
    // SAFETY: `raw` came from Box::into_raw in ensure_registered and is freed only here.
    // Unregistering an unregistered VFS is a no-op for SQLite. pAppData came from
    // Arc::into_raw of a VolumeState.
    unsafe {
        ffi::sqlite3_vfs_unregister(raw);
        let boxed = Box::from_raw(raw);
        drop(Arc::from_raw(boxed.pAppData.cast::<VolumeState>()));
    }
    drop(vfs.name);
}

/// The default VFS, to which time, randomness, sleep and dynamic loading are delegated.
fn default_vfs() -> *mut ffi::sqlite3_vfs {
    // SAFETY: sqlite3_vfs_find(NULL) returns the default VFS (never unregistered here).
    unsafe { ffi::sqlite3_vfs_find(ptr::null()) }
}

/// Runs `f`, turning a panic into `on_panic` (never unwinds into SQLite).
fn guard(on_panic: c_int, f: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        tracing::error!("panic inside a sixfold VFS callback");
        on_panic
    })
}

/// # Safety
/// `file` must be a `SixFile` that x_open initialised and x_close has not freed.
unsafe fn handle_of<'a>(file: *mut ffi::sqlite3_file) -> &'a mut Handle {
    // SAFETY: per the contract, `file` points at a live SixFile whose `handle` came from
    // Box::into_raw in x_open; SQLite uses a file from one thread at a time.
    unsafe { &mut *(*file.cast::<SixFile>()).handle }
}

/// # Safety
/// `vfs` must be one registered by `ensure_registered`.
unsafe fn state_of<'a>(vfs: *mut ffi::sqlite3_vfs) -> &'a VolumeState {
    // SAFETY: pAppData holds a strong Arc<VolumeState> for as long as the VFS exists.
    unsafe { &*(*vfs).pAppData.cast::<VolumeState>() }
}

/// Reports a failure of a main file: keeps the text, returns the code.
fn report(file: &mut MainFile, result: Result<c_int, Fail>) -> c_int {
    match result {
        Ok(code) => code,
        Err(fail) => {
            file.record_error(&fail);
            fail.code
        }
    }
}

fn database_id(state: &VolumeState, name: &str) -> Result<Option<u32>, String> {
    if validate_name(name).is_err() {
        return Ok(None);
    }
    let volume = state.volume().ok_or("sixfold: volume no longer exists")?;
    at_read_point(volume.as_ref(), |read_point| {
        Ok(read_catalog(volume.as_ref(), read_point)?.0.lookup(name))
    })
    .map_err(|e| format!("sixfold: catalog: {e}"))
}

unsafe extern "C" fn x_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    guard(ffi::SQLITE_CANTOPEN, || {
        // SAFETY: SQLite passes the VFS it registered and `szOsFile` writable bytes.
        let state = unsafe { state_of(vfs) };
        // SAFETY: a NULL pMethods tells SQLite not to call xClose if we fail below.
        unsafe { (*file).pMethods = ptr::null() };
        let handle = if name.is_null() || flags & ffi::SQLITE_OPEN_MAIN_DB == 0 {
            // V4: journals, temporary databases and sub-journals stay local, in memory.
            Handle::Mem(MemFile::default())
        } else {
            // SAFETY: a non-NULL name is a NUL-terminated string SQLite owns.
            let name = unsafe { CStr::from_ptr(name) }
                .to_string_lossy()
                .into_owned();
            match open_main(state, &name) {
                Ok(main) => Handle::Main(Box::new(main)),
                Err(text) => {
                    tracing::warn!(%name, "{text}");
                    return ffi::SQLITE_CANTOPEN;
                }
            }
        };
        let six = SixFile {
            base: ffi::sqlite3_file {
                pMethods: &IO_METHODS,
            },
            handle: Box::into_raw(Box::new(handle)),
        };
        // SAFETY: `file` has room for a SixFile (szOsFile) and is ours until xClose.
        unsafe {
            ptr::write(file.cast::<SixFile>(), six);
            if !out_flags.is_null() {
                *out_flags = flags;
            }
        }
        ffi::SQLITE_OK
    })
}

/// V4: a database file name is a database of the volume's catalog.
fn open_main(state: &VolumeState, name: &str) -> Result<MainFile, String> {
    let _guard = state.catalog_guard();
    let volume = state.volume().ok_or("sixfold: volume no longer exists")?;
    let db_id = database_id(state, name)?.ok_or_else(|| format!("no database named {name:?}"))?;
    let shared = state_arc(state);
    Ok(MainFile::new(shared, volume, db_id, name.to_owned()))
}

/// A new strong reference to a state reached through a VFS's pAppData.
fn state_arc(state: &VolumeState) -> Arc<VolumeState> {
    let raw: *const VolumeState = state;
    // SAFETY: `state` is the pointee of the Arc<VolumeState> leaked into pAppData, which
    // stays alive while the VFS is registered; incrementing first keeps counts right.
    unsafe {
        Arc::increment_strong_count(raw);
        Arc::from_raw(raw)
    }
}

unsafe extern "C" fn x_delete(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    _sync_dir: c_int,
) -> c_int {
    guard(ffi::SQLITE_IOERR_DELETE, || {
        // SAFETY: SQLite passes its own VFS and a NUL-terminated name.
        let (state, name) = unsafe { (state_of(vfs), CStr::from_ptr(name).to_string_lossy()) };
        // Journals live in their opener's memory and vanish on close; a database is
        // removed only through the catalog.
        match database_id(state, &name) {
            Ok(None) => ffi::SQLITE_OK,
            Ok(Some(_)) | Err(_) => ffi::SQLITE_IOERR_DELETE,
        }
    })
}

unsafe extern "C" fn x_access(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    _flags: c_int,
    out: *mut c_int,
) -> c_int {
    guard(ffi::SQLITE_IOERR_ACCESS, || {
        // SAFETY: SQLite passes its own VFS and a NUL-terminated name.
        let (state, name) = unsafe { (state_of(vfs), CStr::from_ptr(name).to_string_lossy()) };
        // No journal is ever visible to another opener: there is never a hot journal,
        // because a transaction reaches the volume whole or not at all (V5).
        let exists = match database_id(state, &name) {
            Ok(found) => found.is_some(),
            Err(_) => return ffi::SQLITE_IOERR_ACCESS,
        };
        // SAFETY: `out` is a valid int pointer supplied by SQLite.
        unsafe { *out = c_int::from(exists) };
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_full_pathname(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    out_len: c_int,
    out: *mut c_char,
) -> c_int {
    guard(ffi::SQLITE_CANTOPEN, || {
        // SAFETY: a NUL-terminated name from SQLite.
        let bytes = unsafe { CStr::from_ptr(name) }.to_bytes_with_nul();
        let capacity = usize::try_from(out_len).unwrap_or(0);
        if bytes.len() > capacity {
            return ffi::SQLITE_CANTOPEN;
        }
        // SAFETY: `out` has `out_len` bytes; the name with its NUL fits.
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), out, bytes.len()) };
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_dl_open(_vfs: *mut ffi::sqlite3_vfs, name: *const c_char) -> *mut c_void {
    let base = default_vfs();
    // SAFETY: delegating to the default VFS with its own pointer.
    unsafe { (*base).xDlOpen.map_or(ptr::null_mut(), |f| f(base, name)) }
}

unsafe extern "C" fn x_dl_error(_vfs: *mut ffi::sqlite3_vfs, len: c_int, out: *mut c_char) {
    let base = default_vfs();
    // SAFETY: delegating to the default VFS with its own pointer.
    unsafe {
        if let Some(f) = (*base).xDlError {
            f(base, len, out);
        }
    }
}

type DlSym = unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char);

unsafe extern "C" fn x_dl_sym(
    _vfs: *mut ffi::sqlite3_vfs,
    library: *mut c_void,
    symbol: *const c_char,
) -> Option<DlSym> {
    let base = default_vfs();
    // SAFETY: delegating to the default VFS with its own pointer.
    unsafe { (*base).xDlSym.and_then(|f| f(base, library, symbol)) }
}

unsafe extern "C" fn x_dl_close(_vfs: *mut ffi::sqlite3_vfs, library: *mut c_void) {
    let base = default_vfs();
    // SAFETY: delegating to the default VFS with its own pointer.
    unsafe {
        if let Some(f) = (*base).xDlClose {
            f(base, library);
        }
    }
}

unsafe extern "C" fn x_randomness(
    _vfs: *mut ffi::sqlite3_vfs,
    len: c_int,
    out: *mut c_char,
) -> c_int {
    let base = default_vfs();
    // SAFETY: delegating to the default VFS with its own pointer.
    unsafe { (*base).xRandomness.map_or(0, |f| f(base, len, out)) }
}

unsafe extern "C" fn x_sleep(_vfs: *mut ffi::sqlite3_vfs, micros: c_int) -> c_int {
    let base = default_vfs();
    // SAFETY: delegating to the default VFS with its own pointer.
    unsafe { (*base).xSleep.map_or(0, |f| f(base, micros)) }
}

unsafe extern "C" fn x_current_time(_vfs: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
    let base = default_vfs();
    // SAFETY: delegating to the default VFS with its own pointer.
    unsafe {
        (*base)
            .xCurrentTime
            .map_or(ffi::SQLITE_ERROR, |f| f(base, out))
    }
}

unsafe extern "C" fn x_current_time_int64(_vfs: *mut ffi::sqlite3_vfs, out: *mut i64) -> c_int {
    let base = default_vfs();
    // SAFETY: delegating to the default VFS with its own pointer.
    unsafe {
        (*base)
            .xCurrentTimeInt64
            .map_or(ffi::SQLITE_ERROR, |f| f(base, out))
    }
}

unsafe extern "C" fn x_get_last_error(
    _vfs: *mut ffi::sqlite3_vfs,
    _len: c_int,
    _out: *mut c_char,
) -> c_int {
    0
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    guard(ffi::SQLITE_IOERR_CLOSE, || {
        // SAFETY: SQLite calls xClose once on a file x_open initialised; the Box is
        // reclaimed here and pMethods cleared so nothing uses it again.
        let mut handle = unsafe {
            let six = file.cast::<SixFile>();
            let boxed = Box::from_raw((*six).handle);
            (*six).handle = ptr::null_mut();
            (*file).pMethods = ptr::null();
            boxed
        };
        match handle.as_mut() {
            Handle::Main(main) => {
                let result = main.close().map(|()| ffi::SQLITE_OK);
                report(main, result)
            }
            Handle::Mem(_) => ffi::SQLITE_OK,
        }
    })
}

/// Converts SQLite's (pointer, amount) into a slice length, refusing a negative one.
fn amount(len: c_int) -> Option<usize> {
    usize::try_from(len).ok()
}

unsafe extern "C" fn x_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    len: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    guard(ffi::SQLITE_IOERR_READ, || {
        let (Some(len), Ok(offset)) = (amount(len), u64::try_from(offset)) else {
            return ffi::SQLITE_IOERR_READ;
        };
        // SAFETY: SQLite passes a live file and a buffer of `len` writable bytes.
        let (handle, buf) = unsafe {
            (
                handle_of(file),
                std::slice::from_raw_parts_mut(buf.cast::<u8>(), len),
            )
        };
        match handle {
            Handle::Main(main) => {
                let result = main.read(buf, offset);
                report(main, result)
            }
            Handle::Mem(mem) => mem.read(buf, offset),
        }
    })
}

unsafe extern "C" fn x_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    len: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    guard(ffi::SQLITE_IOERR_WRITE, || {
        let (Some(len), Ok(offset)) = (amount(len), u64::try_from(offset)) else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        // SAFETY: SQLite passes a live file and a buffer of `len` readable bytes.
        let (handle, data) = unsafe {
            (
                handle_of(file),
                std::slice::from_raw_parts(buf.cast::<u8>(), len),
            )
        };
        match handle {
            Handle::Main(main) => {
                let result = main.write(data, offset).map(|()| ffi::SQLITE_OK);
                report(main, result)
            }
            Handle::Mem(mem) => mem.write(data, offset),
        }
    })
}

unsafe extern "C" fn x_truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    guard(ffi::SQLITE_IOERR_TRUNCATE, || {
        let Ok(size) = u64::try_from(size) else {
            return ffi::SQLITE_IOERR_TRUNCATE;
        };
        // SAFETY: SQLite passes a live file.
        match unsafe { handle_of(file) } {
            Handle::Main(main) => {
                let result = main.truncate(size).map(|()| ffi::SQLITE_OK);
                report(main, result)
            }
            Handle::Mem(mem) => {
                mem.truncate(size);
                ffi::SQLITE_OK
            }
        }
    })
}

unsafe extern "C" fn x_sync(file: *mut ffi::sqlite3_file, _flags: c_int) -> c_int {
    guard(ffi::SQLITE_IOERR_FSYNC, || {
        // SAFETY: SQLite passes a live file.
        match unsafe { handle_of(file) } {
            Handle::Main(main) => {
                let result = main.sync().map(|()| ffi::SQLITE_OK);
                report(main, result)
            }
            Handle::Mem(_) => ffi::SQLITE_OK,
        }
    })
}

unsafe extern "C" fn x_file_size(
    file: *mut ffi::sqlite3_file,
    out: *mut ffi::sqlite3_int64,
) -> c_int {
    guard(ffi::SQLITE_IOERR_FSTAT, || {
        // SAFETY: SQLite passes a live file.
        let size = match unsafe { handle_of(file) } {
            Handle::Main(main) => match main.file_size() {
                Ok(size) => size,
                Err(fail) => return report(main, Err(fail)),
            },
            Handle::Mem(mem) => mem.size(),
        };
        let Ok(size) = i64::try_from(size) else {
            return ffi::SQLITE_IOERR_FSTAT;
        };
        // SAFETY: `out` is a valid pointer supplied by SQLite.
        unsafe { *out = size };
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    guard(ffi::SQLITE_IOERR_LOCK, || {
        let Some(level) = LockLevel::from_raw(level) else {
            return ffi::SQLITE_MISUSE;
        };
        // SAFETY: SQLite passes a live file.
        match unsafe { handle_of(file) } {
            Handle::Main(main) => {
                let result = main.lock(level);
                report(main, result)
            }
            Handle::Mem(_) => ffi::SQLITE_OK,
        }
    })
}

unsafe extern "C" fn x_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    guard(ffi::SQLITE_IOERR_UNLOCK, || {
        let Some(level) = LockLevel::from_raw(level) else {
            return ffi::SQLITE_MISUSE;
        };
        // SAFETY: SQLite passes a live file.
        match unsafe { handle_of(file) } {
            Handle::Main(main) => {
                let result = main.unlock(level).map(|()| ffi::SQLITE_OK);
                report(main, result)
            }
            Handle::Mem(_) => ffi::SQLITE_OK,
        }
    })
}

unsafe extern "C" fn x_check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    guard(ffi::SQLITE_IOERR_CHECKRESERVEDLOCK, || {
        // SAFETY: SQLite passes a live file.
        let reserved = match unsafe { handle_of(file) } {
            Handle::Main(main) => main.check_reserved(),
            Handle::Mem(_) => false,
        };
        // SAFETY: `out` is a valid pointer supplied by SQLite.
        unsafe { *out = c_int::from(reserved) };
        ffi::SQLITE_OK
    })
}

/// Why a PRAGMA is refused (V6), or None to let SQLite handle it.
fn refused_pragma(name: &str, value: Option<&str>) -> Option<&'static str> {
    let value = value?.trim().trim_matches(['\'', '"']).to_ascii_lowercase();
    match (name.to_ascii_lowercase().as_str(), value.as_str()) {
        ("journal_mode", "wal") => Some(
            "sixfold: journal_mode=WAL is refused (V6): a transaction must reach the volume \
             as one MTR at its commit point, and WAL commits by appending frames to a WAL \
             file outside the volume",
        ),
        ("journal_mode", "off") => Some(
            "sixfold: journal_mode=OFF is refused (V6): without a journal SQLite cannot \
             roll back a transaction whose pages it already wrote",
        ),
        ("synchronous", "off" | "0" | "no" | "false") => Some(
            "sixfold: synchronous=OFF is refused (V6): SQLite would then never call xSync, \
             which is the commit point of transactions too large for one batch",
        ),
        _ => None,
    }
}

/// SQLITE_FCNTL_PRAGMA: refuse what V6 forbids, with the text as the error message.
///
/// # Safety
/// `arg` must be the `char*[3]` SQLite passes with SQLITE_FCNTL_PRAGMA.
unsafe fn pragma_control(arg: *mut c_void) -> c_int {
    let args = arg.cast::<*mut c_char>();
    // SAFETY: per the contract, args[1] is the pragma name and args[2] its value or NULL.
    let (name, value) = unsafe {
        let name = CStr::from_ptr(*args.add(1)).to_string_lossy().into_owned();
        let value = (*args.add(2)).cast_const();
        let value =
            (!value.is_null()).then(|| CStr::from_ptr(value).to_string_lossy().into_owned());
        (name, value)
    };
    let Some(text) = refused_pragma(&name, value.as_deref()) else {
        return ffi::SQLITE_NOTFOUND;
    };
    let text = CString::new(text).expect("no NUL in message");
    // SAFETY: SQLite frees args[0] with sqlite3_free, so it must come from sqlite3_mprintf.
    unsafe { *args = ffi::sqlite3_mprintf(c"%s".as_ptr(), text.as_ptr()) };
    ffi::SQLITE_ERROR
}

unsafe extern "C" fn x_file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    guard(ffi::SQLITE_IOERR, || {
        // SAFETY: SQLite passes a live file.
        let Handle::Main(main) = (unsafe { handle_of(file) }) else {
            return ffi::SQLITE_NOTFOUND;
        };
        let result = match op {
            ffi::SQLITE_FCNTL_BEGIN_ATOMIC_WRITE => main.begin_batch().map(|()| ffi::SQLITE_OK),
            ffi::SQLITE_FCNTL_COMMIT_ATOMIC_WRITE => main.commit_batch().map(|()| ffi::SQLITE_OK),
            ffi::SQLITE_FCNTL_ROLLBACK_ATOMIC_WRITE => {
                main.rollback_batch();
                Ok(ffi::SQLITE_OK)
            }
            // SAFETY: SQLite passes the pragma argument array with this op.
            ffi::SQLITE_FCNTL_PRAGMA => Ok(unsafe { pragma_control(arg) }),
            _ => Ok(ffi::SQLITE_NOTFOUND),
        };
        report(main, result)
    })
}

unsafe extern "C" fn x_sector_size(_file: *mut ffi::sqlite3_file) -> c_int {
    c_int::try_from(crate::volume::PAGE_SIZE).expect("4096 fits")
}

unsafe extern "C" fn x_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    guard(0, || {
        // SAFETY: SQLite passes a live file.
        match unsafe { handle_of(file) } {
            // V6: batch atomic writes give SQLite its commit point (FCNTL_*_ATOMIC_WRITE).
            Handle::Main(_) => {
                ffi::SQLITE_IOCAP_BATCH_ATOMIC
                    | ffi::SQLITE_IOCAP_POWERSAFE_OVERWRITE
                    | ffi::SQLITE_IOCAP_UNDELETABLE_WHEN_OPEN
            }
            Handle::Mem(_) => ffi::SQLITE_IOCAP_POWERSAFE_OVERWRITE,
        }
    })
}

/// The VFS error text kept for `conn`'s main database, if its last failure came from
/// the volume (SQLite itself only reports "disk I/O error").
pub fn last_vfs_error(conn: &rusqlite::Connection) -> Option<String> {
    let mut file: *mut ffi::sqlite3_file = ptr::null_mut();
    // SAFETY: the handle is live for the borrow of `conn`; FILE_POINTER writes the main
    // database's sqlite3_file pointer into `file`.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_FILE_POINTER,
            (&raw mut file).cast::<c_void>(),
        )
    };
    // SAFETY: checked non-NULL; a file whose pMethods are ours is a live SixFile.
    unsafe {
        if rc != ffi::SQLITE_OK || file.is_null() || !ptr::eq((*file).pMethods, &IO_METHODS) {
            return None;
        }
        match handle_of(file) {
            Handle::Main(main) => main.last_error().map(str::to_owned),
            Handle::Mem(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_off_and_sync_off_pragmas_are_refused() {
        // V6
        assert!(refused_pragma("journal_mode", Some("WAL")).is_some());
        assert!(refused_pragma("JOURNAL_MODE", Some("'wal'")).is_some());
        assert!(refused_pragma("journal_mode", Some("off")).is_some());
        assert!(refused_pragma("synchronous", Some("0")).is_some());
        assert!(refused_pragma("journal_mode", Some("delete")).is_none());
        assert!(refused_pragma("journal_mode", None).is_none());
        assert!(refused_pragma("synchronous", Some("full")).is_none());
    }
}
