//! enetstat: netstat rebuilt on eBPF.
//!
//! Data flows one way: the kernel program writes a record per TCP state transition into a
//! ring buffer; [`probe`] (the only module that touches aya) loads and attaches the program
//! and hands records on through [`identity`], which joins the records of one socket where
//! the kernel could not; [`decode`] turns them into plain [`event::Transition`]s; [`tracker`]
//! remembers per socket what a single record cannot tell (time in the previous state, the
//! owner); [`filter`] picks what the user asked for; [`render`] prints it. The `enetstat`
//! binary wires these together.

pub mod btf;
pub mod cgroup;
pub mod client;
pub mod clock;
pub mod daemon;
pub mod decode;
pub mod end;
pub mod event;
pub mod fd_limit;
pub mod filter;
pub mod identity;
pub mod latency;
pub mod life;
pub mod mem;
pub mod netns;
pub mod owner;
pub mod pids;
pub mod pipeline;
pub mod probe;
pub mod render;
pub mod resolve;
pub mod snapshot;
pub mod sockdiag;
pub mod source;
pub mod state;
pub mod table;
#[cfg(test)]
mod test_skip;
pub mod top;
pub mod tracker;
pub mod watch;
