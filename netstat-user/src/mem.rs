//! Giving memory back to the system.

/// Returns the heap's free memory to the system. glibc keeps a process's peak heap for its
/// whole life otherwise, and enetstat's peaks are short: parsing the kernel's BTF at start,
/// a socket dump, a snapshot of a large table. The daemon runs for months; a `-c` refresh
/// every second. Cheap when there is little to give back.
pub fn trim() {
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
}
