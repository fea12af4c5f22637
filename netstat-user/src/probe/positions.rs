//! The ring buffer's producer and consumer positions, read from a read-only mapping of its two
//! metadata pages.
//!
//! aya's `RingBuf::next` answers "nothing" both for an empty ring and for one whose next
//! record is reserved but not yet committed. Going to sleep needs to tell the two apart: a
//! program that reserved before the reader raised its flag may commit without a wakeup (see
//! [`EventStream`](super::stream::EventStream)).

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
    ptr::NonNull,
    sync::atomic::{AtomicUsize, Ordering, fence},
};

/// A read-only view of the consumer page and the producer page that follows it.
pub struct Positions {
    map: NonNull<libc::c_void>,
    page: usize,
}

// SAFETY: the mapping is read-only shared memory, read with atomics.
unsafe impl Send for Positions {}

impl Positions {
    pub fn new(ring: BorrowedFd<'_>) -> io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .map_err(|_| io::Error::other("sysconf(_SC_PAGESIZE) failed"))?;
        // SAFETY: a fresh shared read-only mapping of the ring map's fd (the kernel lets any
        // reader map its metadata pages read-only); checked before use, unmapped on drop.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ,
                libc::MAP_SHARED,
                ring.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map = NonNull::new(map).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(Self { map, page })
    }

    fn load(&self, offset: usize) -> usize {
        // SAFETY: `offset` is 0 or one page into the two-page mapping, page-aligned, and the
        // kernel keeps a naturally aligned word there for as long as the mapping lives.
        unsafe {
            self.map
                .cast::<u8>()
                .add(offset)
                .cast::<AtomicUsize>()
                .as_ref()
        }
        .load(Ordering::Acquire)
    }

    /// Whether the kernel has reserved space the reader has not consumed: a record committed,
    /// or one a program is still writing. Fully ordered after the caller's earlier stores (the
    /// sleep flag), so that either this sees a reservation or its program sees the flag.
    pub fn pending(&self) -> bool {
        fence(Ordering::SeqCst);
        self.load(0) != self.load(self.page)
    }
}

impl Drop for Positions {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.map.as_ptr(), 2 * self.page) };
    }
}
