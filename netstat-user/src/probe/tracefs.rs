//! The classic tracepoint's record layout, from its tracefs `format` file: the fallback for
//! kernels without BTF, where nothing else says where the fields are.

use std::{
    io,
    path::{Path, PathBuf},
};

use netstat_common::TracepointOffsets;

/// Where tracefs is mounted on current systems, and where older ones reach it.
const MOUNTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

const FORMAT: &str = "events/sock/inet_sock_set_state/format";

#[derive(Debug, thiserror::Error)]
pub enum TracefsError {
    #[error(
        "tracefs is not mounted and mounting it on /sys/kernel/tracing failed ({0}). Mount it \
         (`mount -t tracefs tracefs /sys/kernel/tracing`) and run enetstat again"
    )]
    Mount(io::Error),
    #[error(
        "this kernel has no sock:inet_sock_set_state tracepoint ({path} is missing; Linux \
         4.16+ has it)"
    )]
    NoTracepoint { path: PathBuf },
    #[error("cannot read {path}: {cause}")]
    Read { path: PathBuf, cause: io::Error },
    #[error("{path} has no field `{field}`; this kernel's tracepoint is not one enetstat knows")]
    Field { path: PathBuf, field: &'static str },
}

/// The tracefs mount, mounting it on /sys/kernel/tracing when nothing is mounted.
pub fn root() -> Result<PathBuf, TracefsError> {
    for dir in MOUNTS {
        if Path::new(dir).join("events").is_dir() {
            return Ok(dir.into());
        }
    }
    let target = MOUNTS[0];
    nix::mount::mount(
        Some("tracefs"),
        target,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| TracefsError::Mount(e.into()))?;
    tracing::info!("mounted tracefs on {target}");
    Ok(target.into())
}

/// The offsets of the tracepoint's fields, from its format file under `root`.
pub fn offsets(root: &Path) -> Result<TracepointOffsets, TracefsError> {
    let path = root.join(FORMAT);
    let text = std::fs::read_to_string(&path).map_err(|cause| {
        if cause.kind() == io::ErrorKind::NotFound {
            TracefsError::NoTracepoint { path: path.clone() }
        } else {
            TracefsError::Read {
                path: path.clone(),
                cause,
            }
        }
    })?;
    parse(&text).map_err(|field| TracefsError::Field { path, field })
}

/// The offset of `field` in the record of the tracepoint `event` (`category/name`), or
/// `None` when the kernel has no such tracepoint or field.
pub fn field_offset(root: &Path, event: &str, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(root.join("events").join(event).join("format")).ok()?;
    text.lines()
        .filter_map(|line| field(line.trim()))
        .find(|(n, _)| *n == name)
        .map(|(_, offset)| offset)
}

/// Parses a format file; on failure names the first field it lacks.
pub fn parse(format: &str) -> Result<TracepointOffsets, &'static str> {
    let at = |name: &'static str| -> Result<u32, &'static str> {
        format
            .lines()
            .filter_map(|line| field(line.trim()))
            .find(|(n, _)| *n == name)
            .map(|(_, offset)| offset)
            .ok_or(name)
    };
    Ok(TracepointOffsets {
        skaddr: at("skaddr")?,
        oldstate: at("oldstate")?,
        newstate: at("newstate")?,
        sport: at("sport")?,
        dport: at("dport")?,
        family: at("family")?,
        protocol: at("protocol")?,
        saddr: at("saddr")?,
        daddr: at("daddr")?,
        saddr_v6: at("saddr_v6")?,
        daddr_v6: at("daddr_v6")?,
    })
}

/// `field:__u8 saddr[4];<TAB>offset:32;<TAB>size:4;<TAB>signed:0;` -> ("saddr", 32).
fn field(line: &str) -> Option<(&str, u32)> {
    let mut parts = line.split(';');
    let decl = parts.next()?.strip_prefix("field:")?;
    let name = decl.rsplit([' ', '*']).next()?;
    let name = name.split('[').next()?;
    let offset = parts
        .find_map(|p| p.trim().strip_prefix("offset:"))?
        .parse()
        .ok()?;
    Some((name, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The format file of Linux 6.18 (the same layout since 5.x).
    const FORMAT_6_18: &str = "name: inet_sock_set_state
ID: 2287
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;
\tfield:int newstate;\toffset:20;\tsize:4;\tsigned:1;
\tfield:__u16 sport;\toffset:24;\tsize:2;\tsigned:0;
\tfield:__u16 dport;\toffset:26;\tsize:2;\tsigned:0;
\tfield:__u16 family;\toffset:28;\tsize:2;\tsigned:0;
\tfield:__u16 protocol;\toffset:30;\tsize:2;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;
\tfield:__u8 daddr[4];\toffset:36;\tsize:4;\tsigned:0;
\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:__u8 daddr_v6[16];\toffset:56;\tsize:16;\tsigned:0;

print fmt: \"family=%s ...\"
";

    #[test]
    fn reads_every_field_offset() {
        let o = parse(FORMAT_6_18).unwrap();
        assert_eq!(
            o,
            TracepointOffsets {
                skaddr: 8,
                oldstate: 16,
                newstate: 20,
                sport: 24,
                dport: 26,
                family: 28,
                protocol: 30,
                saddr: 32,
                daddr: 36,
                saddr_v6: 40,
                daddr_v6: 56,
            }
        );
    }

    #[test]
    fn names_a_missing_field() {
        let without = FORMAT_6_18.replace("protocol", "proto");
        assert_eq!(parse(&without), Err("protocol"));
    }
}
