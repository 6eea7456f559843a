//! A thin layer over SQLite's own page cache that spares every `COMMIT` of
//! the writer a walk over its whole cache.
//!
//! When a B-tree page splits, SQLite sorts the new pages by swapping their
//! numbers through a scratch number: the page that holds the file's lock
//! bytes (page 262 145 with 4 KiB pages), which no database ever uses. The
//! cache remembers the largest number it has seen since it last dropped
//! pages, so after any split it believes a page that far out may be cached.
//! At the end of each transaction SQLite asks the cache to drop the pages
//! past the end of the file, and with that belief the cache walks every
//! page it holds: about half a millisecond, under the writer's lock, with
//! the writer's 64 MiB cache full.
//!
//! This layer keeps its own bound: the largest page number cached outside
//! the scratch number, and how many pages sit on the scratch number right
//! now. A request to drop the pages from a number above that bound, with no
//! page on the scratch number, drops nothing; it is answered here at once.
//! Every other call goes to SQLite's cache unchanged.

use rusqlite::ffi;
use std::os::raw::{c_int, c_uint, c_void};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

/// SQLite's own cache, whose methods this layer calls.
static INNER: OnceLock<Methods> = OnceLock::new();

/// SQLite's methods object: function pointers and the argument SQLite
/// passes to them, which SQLite itself uses from every thread.
struct Methods(ffi::sqlite3_pcache_methods2);
// SAFETY: see above; nothing here dereferences `pArg`.
unsafe impl Send for Methods {}
// SAFETY: as for `Send`; the object is never changed once set.
unsafe impl Sync for Methods {}

/// Requests to drop pages answered here without a walk (for tests and
/// benchmarks).
static SPARED: AtomicU64 = AtomicU64::new(0);

/// Set once SQLite took this layer.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// True when SQLite's page cache goes through this layer.
pub fn installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

/// Requests to drop pages past the end of the file answered here, since the
/// process started.
pub fn spared() -> u64 {
    SPARED.load(Ordering::Relaxed)
}

/// The first byte of SQLite's lock bytes (its `PENDING_BYTE`).
const LOCK_BYTE: u32 = 0x4000_0000;

/// One connection's cache: SQLite's, and this layer's bound.
struct Cache {
    inner: *mut ffi::sqlite3_pcache,
    /// The scratch page number (the page of the lock bytes).
    scratch: u32,
    /// At least the largest page number cached other than `scratch`.
    max_key: u32,
    /// Pages now cached under `scratch`.
    parked: u32,
}

fn inner() -> &'static ffi::sqlite3_pcache_methods2 {
    &INNER.get().expect("installed before use").0
}

/// # Safety
/// `p` is a cache this layer created and has not destroyed.
unsafe fn cache<'a>(p: *mut ffi::sqlite3_pcache) -> &'a mut Cache {
    &mut *(p as *mut Cache)
}

unsafe extern "C" fn x_init(_arg: *mut c_void) -> c_int {
    let m = inner();
    match m.xInit {
        Some(f) => f(m.pArg),
        None => ffi::SQLITE_OK,
    }
}

unsafe extern "C" fn x_shutdown(_arg: *mut c_void) {
    let m = inner();
    if let Some(f) = m.xShutdown {
        f(m.pArg)
    }
}

unsafe extern "C" fn x_create(
    sz_page: c_int,
    sz_extra: c_int,
    purgeable: c_int,
) -> *mut ffi::sqlite3_pcache {
    let Some(create) = inner().xCreate else {
        return std::ptr::null_mut();
    };
    let p = create(sz_page, sz_extra, purgeable);
    if p.is_null() {
        return p;
    }
    let scratch = LOCK_BYTE / (sz_page.max(1) as u32) + 1;
    Box::into_raw(Box::new(Cache {
        inner: p,
        scratch,
        max_key: 0,
        parked: 0,
    })) as *mut ffi::sqlite3_pcache
}

unsafe extern "C" fn x_cachesize(p: *mut ffi::sqlite3_pcache, n: c_int) {
    if let Some(f) = inner().xCachesize {
        f(cache(p).inner, n)
    }
}

unsafe extern "C" fn x_pagecount(p: *mut ffi::sqlite3_pcache) -> c_int {
    match inner().xPagecount {
        Some(f) => f(cache(p).inner),
        None => 0,
    }
}

unsafe extern "C" fn x_fetch(
    p: *mut ffi::sqlite3_pcache,
    key: c_uint,
    create: c_int,
) -> *mut ffi::sqlite3_pcache_page {
    let c = cache(p);
    let Some(f) = inner().xFetch else {
        return std::ptr::null_mut();
    };
    let page = f(c.inner, key, create);
    if !page.is_null() {
        if key == c.scratch {
            // Only a damaged file asks for this page; the bound gives up
            // until the next real drop.
            c.max_key = u32::MAX;
        } else {
            c.max_key = c.max_key.max(key);
        }
    }
    page
}

unsafe extern "C" fn x_unpin(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    discard: c_int,
) {
    if let Some(f) = inner().xUnpin {
        f(cache(p).inner, page, discard)
    }
}

unsafe extern "C" fn x_rekey(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    old: c_uint,
    new: c_uint,
) {
    let c = cache(p);
    if let Some(f) = inner().xRekey {
        f(c.inner, page, old, new)
    }
    if old == c.scratch {
        c.parked = c.parked.saturating_sub(1);
    }
    if new == c.scratch {
        c.parked += 1;
    } else {
        c.max_key = c.max_key.max(new);
    }
}

unsafe extern "C" fn x_truncate(p: *mut ffi::sqlite3_pcache, limit: c_uint) {
    let c = cache(p);
    if c.parked == 0 && c.max_key < limit {
        // No cached page is numbered `limit` or above: nothing to drop.
        SPARED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if let Some(f) = inner().xTruncate {
        f(c.inner, limit)
    }
    c.max_key = c.max_key.min(limit.saturating_sub(1));
    if limit <= c.scratch {
        c.parked = 0;
    }
}

unsafe extern "C" fn x_destroy(p: *mut ffi::sqlite3_pcache) {
    let c = Box::from_raw(p as *mut Cache);
    if let Some(f) = inner().xDestroy {
        f(c.inner)
    }
}

unsafe extern "C" fn x_shrink(p: *mut ffi::sqlite3_pcache) {
    if let Some(f) = inner().xShrink {
        f(cache(p).inner)
    }
}

/// Puts this layer over SQLite's page cache. Must run before SQLite is
/// initialized (see `inline::configure_library`); returns false, changing
/// nothing, when it is too late.
pub(super) fn install() -> bool {
    let mut own = std::mem::MaybeUninit::<ffi::sqlite3_pcache_methods2>::zeroed();
    // SAFETY: SQLITE_CONFIG_GETPCACHE2 takes one pointer to a methods
    // object, which it fills in (it is allowed before initialization).
    let rc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_GETPCACHE2, own.as_mut_ptr()) };
    if rc != ffi::SQLITE_OK {
        return false;
    }
    // SAFETY: filled in by SQLite above.
    let own = unsafe { own.assume_init() };
    if own.xCreate.is_none() || INNER.set(Methods(own)).is_err() {
        return false;
    }
    let layer = ffi::sqlite3_pcache_methods2 {
        iVersion: 1,
        pArg: std::ptr::null_mut(),
        xInit: Some(x_init),
        xShutdown: Some(x_shutdown),
        xCreate: Some(x_create),
        xCachesize: Some(x_cachesize),
        xPagecount: Some(x_pagecount),
        xFetch: Some(x_fetch),
        xUnpin: Some(x_unpin),
        xRekey: Some(x_rekey),
        xTruncate: Some(x_truncate),
        xDestroy: Some(x_destroy),
        xShrink: Some(x_shrink),
    };
    // SAFETY: SQLITE_CONFIG_PCACHE2 takes one pointer to a methods object,
    // which SQLite copies; the functions above live as long as the process.
    let rc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_PCACHE2, &layer) };
    INSTALLED.store(rc == ffi::SQLITE_OK, Ordering::Relaxed);
    rc == ffi::SQLITE_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> String {
        // Spread over the whole index, so pages split in its middle and
        // SQLite renumbers them through the scratch page.
        format!("{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// Adds 5 000 rows keyed `prefix-…` with values of `len` bytes.
    fn fill(tx: &rusqlite::Transaction<'_>, prefix: &str, len: usize) {
        for i in 0..5_000u64 {
            tx.execute(
                "INSERT INTO t (k, v) VALUES (?1, ?2)",
                (format!("{prefix}-{}", key(i)), "v".repeat(len)),
            )
            .expect("inserts");
        }
    }

    /// Commits after page splits are spared the walk, and a transaction
    /// that grew the file and was rolled back still has its pages dropped:
    /// the file reads back whole with only what was committed.
    #[test]
    fn commits_are_spared_and_rollbacks_drop_their_pages() {
        crate::store::inline::configure_library();
        assert!(installed(), "SQLite's page cache goes through the layer");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("t.db");
        let mut c = rusqlite::Connection::open(&path).expect("opens");
        c.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA cache_size = -65536;
             CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT NOT NULL);
             CREATE INDEX t_v ON t (v);",
        )
        .expect("creates");
        let before = spared();
        let mut n = 0u64;
        for _ in 0..20 {
            let tx = c.transaction().expect("begins");
            for _ in 0..500 {
                n += 1;
                tx.execute(
                    "INSERT INTO t (k, v) VALUES (?1, ?2)",
                    (key(n), format!("{}-{n}", key(n + 7))),
                )
                .expect("inserts");
            }
            tx.commit().expect("commits");
        }
        assert!(
            spared() >= before + 20,
            "every commit is answered without a walk ({} spared)",
            spared() - before
        );
        let cache_used = |c: &rusqlite::Connection| -> i64 {
            let (mut now, mut high) = (0, 0);
            // SAFETY: the handle of an open connection; SQLite writes the two
            // integers.
            let rc = unsafe {
                ffi::sqlite3_db_status(
                    c.handle(),
                    ffi::SQLITE_DBSTATUS_CACHE_USED,
                    &mut now,
                    &mut high,
                    0,
                )
            };
            assert_eq!(rc, ffi::SQLITE_OK);
            now.into()
        };
        let settled = cache_used(&c);
        // A transaction that grows the file by far, then is rolled back.
        let tx = c.transaction().expect("begins");
        fill(&tx, "gone", 300);
        tx.rollback().expect("rolls back");
        // The pages it added past the end of the file are dropped.
        let after = cache_used(&c);
        assert!(
            after < settled + 512 * 1024,
            "the rolled back pages left the cache ({settled} bytes before, {after} after)"
        );
        // The pages it had cached past the end must not come back as the
        // content of the pages this one allocates.
        let tx = c.transaction().expect("begins");
        fill(&tx, "kept", 200);
        tx.commit().expect("commits");
        drop(c);
        let c = rusqlite::Connection::open(&path).expect("opens again");
        let check: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("checks");
        assert_eq!(check, "ok");
        let count = |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).expect("counts") };
        assert_eq!(count("SELECT count(*) FROM t WHERE k LIKE 'gone-%'"), 0);
        assert_eq!(count("SELECT count(*) FROM t WHERE k LIKE 'kept-%'"), 5_000);
        assert_eq!(count("SELECT count(*) FROM t"), n as i64 + 5_000);
    }

    /// The layer drops what SQLite's own cache would: everything from the
    /// limit on, the page on the scratch number included, and answers at
    /// once only when nothing is that far out.
    #[test]
    fn drops_what_sqlites_cache_would() {
        crate::store::inline::configure_library();
        assert!(installed());
        // SAFETY: SQLite is initialized before its cache is used; the cache
        // is created, used with the keys it handed out, and destroyed here.
        unsafe {
            assert_eq!(ffi::sqlite3_initialize(), ffi::SQLITE_OK);
            let p = x_create(4096, 64, 1);
            assert!(!p.is_null());
            // Looked up in SQLite's cache itself, leaving the layer's bound
            // as it is.
            let fetch = inner().xFetch.expect("SQLite's cache fetches");
            let has = |k: u32| !fetch(cache(p).inner, k, 0).is_null();
            for k in 1..=10 {
                assert!(!x_fetch(p, k, 2).is_null());
            }
            let before = spared();
            x_truncate(p, 11);
            assert_eq!(spared(), before + 1, "nothing from 11 on: answered here");
            assert!((1..=10).all(has));

            // A split renumbers page 3 through the scratch number.
            let scratch = LOCK_BYTE / 4096 + 1;
            x_rekey(p, x_fetch(p, 3, 0), 3, scratch);
            assert!(has(scratch));
            x_truncate(p, 11);
            assert_eq!(
                spared(),
                before + 1,
                "a page on the scratch number: passed on"
            );
            assert!(!has(scratch), "and dropped");

            assert!(!x_fetch(p, 12, 2).is_null());
            x_truncate(p, 6);
            assert!((1..=5).filter(|k| *k != 3).all(has));
            assert!(!(6..=12).any(has), "pages from the limit on are dropped");
            x_destroy(p);
        }
    }
}
