//! Least privilege: once the kernel programs are attached, the daemon needs only what the
//! `/proc` scan behind `-p` needs (reading other users' `/proc/PID/fd`): CAP_SYS_PTRACE and
//! CAP_DAC_READ_SEARCH. Everything else goes, from the effective, permitted, inheritable,
//! ambient and bounding sets, so nothing can get it back.
//!
//! Capabilities belong to threads: [`drop_capabilities`] changes the calling thread only. The
//! daemon calls it at the start of every runtime thread and on the main thread right after the
//! programs are attached.
//!
//! With `--user NAME` the daemon also stops being root: [`RunAs::switch`] changes its user and
//! groups before any other thread exists (so every thread has the same ones) and keeps its
//! capabilities across the change (`SECBIT_NO_SETUID_FIXUP`), so it can still load the
//! programs; the drop above then leaves that user with only the two it needs.

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Group, Uid, User};

/// What the daemon keeps after attaching.
pub const KEPT: [Capability; 2] = [Capability::CAP_SYS_PTRACE, Capability::CAP_DAC_READ_SEARCH];

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("cannot drop capabilities: {0}")]
    Caps(caps::errors::CapsError),
    #[error(
        "there is no user {0:?}. Create it (`useradd --system --no-create-home --shell \
         /usr/sbin/nologin {0}`), or name another --user"
    )]
    NoUser(String),
    #[error("cannot look up user {name:?}: {cause}")]
    Lookup { name: String, cause: nix::Error },
    #[error(
        "--user {0} needs the daemon to start as root: it loads its programs, then becomes \
         {0} itself. Run it with sudo, or drop --user"
    )]
    NotRoot(String),
    #[error(
        "cannot switch to user {name:?} ({step}): {cause}. --user needs CAP_SETUID, \
         CAP_SETGID and CAP_SETPCAP"
    )]
    Switch {
        name: String,
        step: &'static str,
        cause: nix::Error,
    },
}

impl From<caps::errors::CapsError> for PrivilegeError {
    /// By hand rather than `#[from]`, which would also chain the error its message names.
    fn from(e: caps::errors::CapsError) -> Self {
        PrivilegeError::Caps(e)
    }
}

/// Drops every capability but [`KEPT`] from the calling thread.
pub fn drop_capabilities() -> Result<(), PrivilegeError> {
    drop_capabilities_but(&[])
}

/// Drops every capability but [`KEPT`] and `extra` from the calling thread.
pub fn drop_capabilities_but(extra: &[Capability]) -> Result<(), PrivilegeError> {
    let kept: CapsHashSet = KEPT.into_iter().chain(extra.iter().copied()).collect();
    let permitted = caps::read(None, CapSet::Permitted)?;
    // The bounding set first, while CAP_SETPCAP is still there.
    if permitted.contains(&Capability::CAP_SETPCAP) {
        for cap in caps::read(None, CapSet::Bounding)? {
            if !kept.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap)?;
            }
        }
    }
    caps::clear(None, CapSet::Ambient)?;
    caps::clear(None, CapSet::Inheritable)?;
    let keep: CapsHashSet = permitted.intersection(&kept).copied().collect();
    caps::set(None, CapSet::Effective, &keep)?;
    caps::set(None, CapSet::Permitted, &keep)?;
    Ok(())
}

/// Takes `cap` out of the calling thread's effective set, or puts it back (it must still be
/// permitted): for trying whether something works without it.
pub fn set_effective(cap: Capability, on: bool) -> Result<(), PrivilegeError> {
    if on {
        caps::raise(None, CapSet::Effective, cap)?;
    } else {
        caps::drop(None, CapSet::Effective, cap)?;
    }
    Ok(())
}

/// A user to run as, looked up in the system's user database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
    /// Its supplementary groups, as `initgroups` would set them.
    pub groups: Vec<Gid>,
}

/// `securebits`: the kernel leaves capabilities alone when the uids change to or from 0.
const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;

impl RunAs {
    /// Looks up `name` (or a numeric uid).
    pub fn lookup(name: &str) -> Result<RunAs, PrivilegeError> {
        let lookup = |cause| PrivilegeError::Lookup {
            name: name.to_owned(),
            cause,
        };
        let user = match name.parse::<u32>() {
            Ok(uid) => User::from_uid(Uid::from_raw(uid)),
            Err(_) => User::from_name(name),
        }
        .map_err(lookup)?
        .ok_or_else(|| PrivilegeError::NoUser(name.to_owned()))?;
        let cname = std::ffi::CString::new(user.name.as_str())
            .map_err(|_| PrivilegeError::NoUser(name.to_owned()))?;
        let groups = nix::unistd::getgrouplist(&cname, user.gid).map_err(lookup)?;
        Ok(RunAs {
            name: user.name,
            uid: user.uid,
            gid: user.gid,
            groups,
        })
    }

    /// Becomes this user, keeping every capability (until [`drop_capabilities`]).
    ///
    /// Call it while the process has one thread: ids belong to threads in the kernel, and a
    /// thread started later inherits the caller's.
    pub fn switch(&self) -> Result<(), PrivilegeError> {
        if !Uid::effective().is_root() {
            return Err(PrivilegeError::NotRoot(self.name.clone()));
        }
        let fail = |step| {
            move |cause| PrivilegeError::Switch {
                name: self.name.clone(),
                step,
                cause,
            }
        };
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe {
            libc::prctl(
                libc::PR_SET_SECUREBITS,
                SECBIT_NO_SETUID_FIXUP,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        nix::errno::Errno::result(rc).map_err(fail("keeping capabilities"))?;
        nix::unistd::setgroups(&self.groups).map_err(fail("groups"))?;
        nix::unistd::setresgid(self.gid, self.gid, self.gid).map_err(fail("group id"))?;
        nix::unistd::setresuid(self.uid, self.uid, self.uid).map_err(fail("user id"))?;
        Ok(())
    }
}

/// A group's id, by name or number. `None` when there is no such group.
pub fn group_id(group: &str) -> Option<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Some(gid);
    }
    Group::from_name(group)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_found_by_name_and_number() {
        let root = RunAs::lookup("root").unwrap();
        assert_eq!(root.uid, Uid::from_raw(0));
        assert_eq!(RunAs::lookup("0").unwrap().name, "root");
        assert!(matches!(
            RunAs::lookup("no-such-user-enetstat"),
            Err(PrivilegeError::NoUser(_))
        ));
        assert_eq!(group_id("root"), Some(0));
        assert_eq!(group_id("42"), Some(42));
        assert_eq!(group_id("no-such-group-enetstat"), None);
    }
}
