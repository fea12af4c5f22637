//! One of the kernel's ring buffers, read in place.
//!
//! aya's `RingBuf` hands out one record at a time and publishes the consumer position after
//! each. The per-CPU rings need more: the merge in [`EventStream`](super::stream::EventStream)
//! looks at the next record of every ring before it takes one, and takes them in time order
//! across rings. So this reader peeks at a record without consuming it, moves its own cursor,
//! and publishes the position once per drain: the kernel reads that position on every
//! reservation, and a store per record bounced its cache line to the producing CPU each time.
//!
//! The layout is the kernel's (`kernel/bpf/ringbuf.c`): a consumer page (writable by the
//! reader), a producer page, then the data pages. The kernel offers the data pages twice in a
//! row, so that a record that wraps around the end reads as one slice; this reader maps them
//! once and copies the rare record that wraps. Every page of a mapping the reader has touched
//! counts in its RSS, so the second mapping cost the daemon the whole ring's size again (8 MiB
//! by default), for a record in a few thousand. Each record has an 8-byte header: its length,
//! with a busy bit while the program still writes it and a discard bit, then the page offset.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
    ptr::NonNull,
    sync::atomic::{AtomicU32, AtomicUsize, Ordering, fence},
};

/// The ring maps, as the kernel crate names them (`ring.rs` there).
pub const NAMES: [&str; netstat_common::RINGS as usize] = [
    "EVENTS_0", "EVENTS_1", "EVENTS_2", "EVENTS_3", "EVENTS_4", "EVENTS_5", "EVENTS_6", "EVENTS_7",
];

/// The size of a ring no CPU writes to: a page, the least the kernel takes.
pub const UNUSED_SIZE: u32 = 4096;

/// How many rings the programs write to: one per possible CPU, at most [`NAMES`].
pub fn count() -> u32 {
    let cpus = aya::util::nr_cpus().map_or(1, std::num::NonZero::get);
    cpus.clamp(1, netstat_common::RINGS)
}

/// Each ring's size for a `--ring-size` of `total` bytes over all of them: an equal share,
/// rounded down to a power of two, at least a page.
pub fn size(total: u32) -> u32 {
    let share = total / count();
    // The highest power of two not above the share.
    let floor = share.checked_ilog2().map_or(0, |bits| 1 << bits);
    floor.max(UNUSED_SIZE)
}

const HEADER: usize = 8;
const BUSY: u32 = 1 << 31;
const DISCARD: u32 = 1 << 30;

/// What lies at the reader's cursor.
#[derive(Debug, PartialEq, Eq)]
pub enum Slot<'a> {
    /// A committed record.
    Record(&'a [u8]),
    /// Reserved by a program that has not committed it yet.
    Busy,
    /// Nothing up to the producer position last read.
    Empty,
}

/// A shared mapping, unmapped on drop.
struct Mapping {
    at: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(fd: BorrowedFd<'_>, len: usize, prot: libc::c_int, offset: usize) -> io::Result<Self> {
        let offset = libc::off_t::try_from(offset).map_err(io::Error::other)?;
        // SAFETY: a fresh shared mapping of the ring map's fd, as the kernel lays it out;
        // checked before use, unmapped on drop.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                offset,
            )
        };
        if at == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let at = NonNull::new(at.cast()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(Self { at, len })
    }

    /// The word at `offset`: page-aligned positions the kernel keeps naturally aligned.
    fn position(&self, offset: usize) -> &AtomicUsize {
        assert!(offset + size_of::<usize>() <= self.len);
        // SAFETY: in bounds (checked), aligned (a page offset), alive as long as `self`.
        unsafe { self.at.add(offset).cast::<AtomicUsize>().as_ref() }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.at.as_ptr().cast(), self.len) };
    }
}

// SAFETY: shared memory read and written only through atomics or, for committed records,
// after an acquire load that the kernel's release store pairs with.
unsafe impl Send for Mapping {}

pub struct Ring {
    consumer: Mapping,
    /// The producer page, then the data pages (once).
    producer: Mapping,
    page: usize,
    mask: usize,
    /// A record that wraps around the end of the data, joined.
    wrapped: Vec<u8>,
    /// The next record to read; published to the kernel by [`Ring::publish`].
    cursor: usize,
    /// The producer position last read.
    end: usize,
}

impl Ring {
    /// Maps the ring map `fd` of `size` bytes (a power of two, at least a page).
    pub fn new(fd: BorrowedFd<'_>, size: usize) -> io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .map_err(|_| io::Error::other("sysconf(_SC_PAGESIZE) failed"))?;
        if !size.is_power_of_two() || size < page {
            return Err(io::Error::other(format!(
                "ring buffer size {size} is not a power of two of at least a page"
            )));
        }
        let consumer = Mapping::new(fd, page, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        let producer = Mapping::new(fd, page + size, libc::PROT_READ, page)?;
        let cursor = consumer.position(0).load(Ordering::Acquire);
        let end = producer.position(0).load(Ordering::Acquire);
        Ok(Self {
            consumer,
            producer,
            page,
            mask: size - 1,
            wrapped: Vec::new(),
            cursor,
            end,
        })
    }

    /// Reads the producer position again: records reserved since become visible.
    pub fn refresh(&mut self) {
        self.end = self.producer.position(0).load(Ordering::Acquire);
    }

    /// The record at the cursor, skipping discarded ones. Records are 8-byte aligned and at
    /// most the ring's size, as the kernel writes them.
    pub fn peek(&mut self) -> Slot<'_> {
        loop {
            if self.cursor == self.end {
                return Slot::Empty;
            }
            let at = self.page + (self.cursor & self.mask);
            // SAFETY: `at` is within the producer mapping (one page + the data twice), and
            // the header is 8-byte aligned; the kernel publishes it with a release store.
            let header = unsafe { self.producer.at.add(at).cast::<AtomicU32>().as_ref() }
                .load(Ordering::Acquire);
            if header & BUSY != 0 {
                return Slot::Busy;
            }
            let len = (header & !(BUSY | DISCARD)) as usize;
            if header & DISCARD != 0 {
                self.cursor += (HEADER + len).next_multiple_of(8);
                continue;
            }
            let start = at + HEADER;
            let data_end = self.page + self.mask + 1;
            if len > self.mask + 1 - HEADER {
                // Never written by a kernel; read as the end rather than past the mapping.
                tracing::warn!("a ring buffer record claims {len} bytes; skipping the ring");
                return Slot::Empty;
            }
            // The header never wraps (8-byte aligned in a ring of whole pages); the data may.
            let first = len.min(data_end - start);
            // SAFETY: `start..start + first` is within the data pages of the mapping (`first`
            // stops at their end), the record is committed (acquire load of a header without
            // the busy bit), and the kernel does not rewrite it until the consumer position
            // moves past it, which only `publish` does, after the caller is done with it.
            let head =
                unsafe { std::slice::from_raw_parts(self.producer.at.add(start).as_ptr(), first) };
            if first == len {
                return Slot::Record(head);
            }
            // SAFETY: the rest, at the start of the data pages; as above.
            let tail = unsafe {
                std::slice::from_raw_parts(self.producer.at.add(self.page).as_ptr(), len - first)
            };
            self.wrapped.clear();
            self.wrapped.extend_from_slice(head);
            self.wrapped.extend_from_slice(tail);
            return Slot::Record(&self.wrapped);
        }
    }

    /// Moves the cursor past the record [`peek`](Self::peek) returned, of `len` bytes.
    pub fn advance(&mut self, len: usize) {
        self.cursor += (HEADER + len).next_multiple_of(8);
    }

    /// Gives the space of the records read back to the kernel.
    pub fn publish(&mut self) {
        self.consumer
            .position(0)
            .store(self.cursor, Ordering::Release);
    }

    /// Whether the kernel has reserved space not yet read: a record committed, or one a
    /// program is still writing. Fully ordered after the caller's earlier stores (the sleep
    /// flag), so that either this sees a reservation or its program sees the flag.
    pub fn pending(&self) -> bool {
        fence(Ordering::SeqCst);
        self.producer.position(0).load(Ordering::Acquire) != self.cursor
    }
}
