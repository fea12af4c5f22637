//! The `newc` cpio format the kernel unpacks an initramfs from: a 110-byte ASCII header per
//! entry, the name, the data, each padded to 4 bytes, and a `TRAILER!!!` entry at the end.
//! Every entry is owned by root with time 0, so the same inputs give the same archive.

use std::io::{self, Write};

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;

/// What an entry is.
pub enum Kind<'a> {
    Dir,
    /// A regular file with its permission bits.
    File(&'a [u8], u32),
    /// A character device (major, minor), like `dev/console`.
    CharDev(u32, u32),
}

/// Writes entries one by one; a directory must come before what is in it.
pub struct Writer<W: Write> {
    out: W,
    ino: u32,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Writer { out, ino: 1 }
    }

    /// One entry; `name` is relative (`bin/busybox`).
    pub fn entry(&mut self, name: &str, kind: Kind<'_>) -> io::Result<()> {
        let (mode, data, rdev) = match kind {
            Kind::Dir => (S_IFDIR | 0o755, &[][..], (0, 0)),
            Kind::File(data, perm) => (S_IFREG | perm, data, (0, 0)),
            Kind::CharDev(major, minor) => (S_IFCHR | 0o600, &[][..], (major, minor)),
        };
        let nlink = if matches!(kind, Kind::Dir) { 2 } else { 1 };
        self.ino += 1;
        self.raw(name, self.ino, mode, nlink, data, rdev)
    }

    /// The trailer; gives the output back.
    pub fn finish(mut self) -> io::Result<W> {
        self.raw("TRAILER!!!", 0, 0, 1, &[], (0, 0))?;
        Ok(self.out)
    }

    fn raw(
        &mut self,
        name: &str,
        ino: u32,
        mode: u32,
        nlink: u32,
        data: &[u8],
        (rmajor, rminor): (u32, u32),
    ) -> io::Result<()> {
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::other(format!("{name} is too big for cpio")))?;
        let namesize = name.len() + 1;
        let header = format!(
            "070701{ino:08x}{mode:08x}{uid:08x}{gid:08x}{nlink:08x}{mtime:08x}{size:08x}\
             {major:08x}{minor:08x}{rmajor:08x}{rminor:08x}{namesize:08x}{check:08x}",
            uid = 0,
            gid = 0,
            mtime = 0,
            major = 0,
            minor = 0,
            check = 0,
        );
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        self.pad(110 + namesize)?;
        self.out.write_all(data)?;
        self.pad(data.len())
    }

    fn pad(&mut self, written: usize) -> io::Result<()> {
        let zeros = (4 - written % 4) % 4;
        self.out.write_all(&[0; 3][..zeros])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_newc_and_aligned() {
        let mut w = Writer::new(Vec::new());
        w.entry("init", Kind::File(b"#!/bin/sh\n", 0o755)).unwrap();
        let out = w.finish().unwrap();
        assert!(out.starts_with(b"070701"));
        // Header (110) + "init\0" (5) padded to 116, then 10 bytes of data padded to 12.
        assert_eq!(&out[110..115], b"init\0");
        assert_eq!(&out[116..126], b"#!/bin/sh\n");
        assert_eq!(&out[128..134], b"070701");
        assert_eq!(out.len() % 4, 0);
        let mode = std::str::from_utf8(&out[14..22]).unwrap();
        assert_eq!(u32::from_str_radix(mode, 16).unwrap(), S_IFREG | 0o755);
    }
}
