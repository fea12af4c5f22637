//! Least privilege: once the kernel programs are attached, the daemon needs only what the
//! `/proc` scan behind `-p` needs (reading other users' `/proc/PID/fd`): CAP_SYS_PTRACE and
//! CAP_DAC_READ_SEARCH. Everything else goes, from the effective, permitted, inheritable,
//! ambient and bounding sets, so nothing can get it back.
//!
//! Capabilities belong to threads: [`drop_capabilities`] changes the calling thread only. The
//! daemon calls it at the start of every runtime thread and on the main thread right after the
//! programs are attached.

use caps::{CapSet, Capability, CapsHashSet};

/// What the daemon keeps after attaching.
pub const KEPT: [Capability; 2] = [Capability::CAP_SYS_PTRACE, Capability::CAP_DAC_READ_SEARCH];

#[derive(Debug, thiserror::Error)]
#[error("cannot drop capabilities: {0}")]
pub struct PrivilegeError(#[from] caps::errors::CapsError);

/// Drops every capability but [`KEPT`] from the calling thread.
pub fn drop_capabilities() -> Result<(), PrivilegeError> {
    let kept: CapsHashSet = KEPT.into_iter().collect();
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
