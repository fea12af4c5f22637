//! The one per-record path ([`netstat_core::pipeline`]), and the two things it needs from the
//! running system: the namespace inode records carry, and the owners of sockets that predate
//! tracing (a `/proc` scan and a sock_diag dump).

pub use netstat_core::pipeline::*;

use crate::{
    pids::SocketOwners,
    probe::Mode,
    sockdiag::{self, Proto, SockDiagError},
    state::TcpState,
};

/// The network namespace inode that records made in `mode` carry for this namespace's
/// sockets: the classic tracepoint cannot read it (0).
pub fn records_netns(mode: Mode) -> u32 {
    match mode {
        Mode::Tracepoint => 0,
        _ => crate::netns::own_netns().unwrap_or(0),
    }
}

/// Owners for the sockets a [`Pipeline`] meets that were there before tracing began.
pub trait SeedOwners {
    /// Gives the sockets and listeners that predate tracing the owners a `/proc` scan finds
    /// holding them (as `netstat -p` does), so their transitions are not ownerless until
    /// their process acts on them. `netns` is the namespace inode the records carry for
    /// this namespace's sockets (0 where the kernel mode cannot give it). Returns how many
    /// sockets got an owner.
    fn seed_owners(&mut self, netns: u32) -> Result<usize, SockDiagError>;
}

impl SeedOwners for Pipeline {
    fn seed_owners(&mut self, netns: u32) -> Result<usize, SockDiagError> {
        let holders = SocketOwners::scan();
        let mut seeded = 0;
        sockdiag::dump_each(&[Proto::Tcp], |d| {
            let (Some(owner), Some(port)) = (holders.get(d.inode), d.local.port) else {
                return;
            };
            seeded += 1;
            if d.state == TcpState::Listen {
                self.sockets
                    .owners_mut()
                    .seed_listener(netns, port, owner.clone());
            } else {
                self.sockets.seed(d.cookie, netns, port, owner.clone());
            }
        })?;
        Ok(seeded)
    }
}
