//! SQLite's allocations through mimalloc, the allocator of the rest of the
//! process.
//!
//! SQLite calls the C library's `malloc` unless told otherwise, and it
//! allocates a great deal on the writer's hot path: every page a
//! transaction of a group commit changes is first copied into the
//! savepoint's in-memory journal, in chunks of its own, freed again at the
//! release (see `store::writer`). With glibc's allocator that was several
//! per cent of the server's CPU, all of it under the writer's lock.

use libmimalloc_sys as mi;
use rusqlite::ffi;
use std::os::raw::{c_int, c_void};

unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
    // SAFETY: mimalloc's malloc takes any size; SQLite never asks for a
    // negative one (it checks before calling).
    unsafe { mi::mi_malloc(n.max(0) as usize) }
}

unsafe extern "C" fn x_free(p: *mut c_void) {
    // SAFETY: `p` came from `x_malloc` or `x_realloc` (SQLite frees only
    // what its methods allocated), or is null.
    unsafe { mi::mi_free(p) }
}

unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    // SAFETY: as for `x_free`; mimalloc's realloc keeps the contents.
    unsafe { mi::mi_realloc(p, n.max(0) as usize) }
}

unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
    // SAFETY: as for `x_free`. The usable size is at least what was asked
    // for, and SQLite may use all of it (as with glibc's
    // `malloc_usable_size`, which its default methods use).
    let n = unsafe { mi::mi_usable_size(p) };
    c_int::try_from(n).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn x_roundup(n: c_int) -> c_int {
    // mimalloc's size classes are multiples of 8 for small sizes. SQLite
    // bounds `n` far below the limit; saturating keeps this total anyway.
    n.saturating_add(7) & !7
}

unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_shutdown(_: *mut c_void) {}

/// Hands SQLite these methods. Must run before SQLite is initialized (it
/// refuses later, and then keeps the C library's): false if it refused.
pub fn install() -> bool {
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
    // SAFETY: SQLITE_CONFIG_MALLOC takes a pointer to a methods object,
    // which SQLite copies before returning; the functions above live for
    // the whole process.
    let rc = unsafe {
        ffi::sqlite3_config(
            ffi::SQLITE_CONFIG_MALLOC,
            &methods as *const ffi::sqlite3_mem_methods,
        )
    };
    rc == ffi::SQLITE_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_allocates_from_mimalloc_once_the_library_is_configured() {
        crate::store::inline::configure_library();
        // SAFETY: a plain allocation through SQLite's public interface,
        // resized and freed through it.
        unsafe {
            let p = ffi::sqlite3_malloc(100);
            assert!(!p.is_null());
            assert!(
                mi::mi_is_in_heap_region(p),
                "SQLite allocated outside mimalloc's heap"
            );
            assert!(ffi::sqlite3_msize(p) >= 100);
            let q = ffi::sqlite3_realloc(p, 10_000);
            assert!(mi::mi_is_in_heap_region(q));
            assert!(ffi::sqlite3_msize(q) >= 10_000);
            ffi::sqlite3_free(q);
        }
    }
}
