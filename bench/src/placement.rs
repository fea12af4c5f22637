//! Where the load generator's threads run (`enetstat-loadgen churn --placement`).
//!
//! On a 2-vCPU VM the server shape's rate depends mostly on where the scheduler happens to
//! put six busy threads on two CPUs: left free, back-to-back 2-second untraced runs of the
//! same binary read from 37k to 53k connections a second, against 55k-69k with each worker's
//! threads pinned, together or apart alike. A tracer, one more runnable task, moves that
//! balance as much as its CPU does. Pinning the threads takes the scheduler's choice out of an
//! experiment; the benchmark itself leaves them free, as users' servers run.

use std::io;

/// How a worker's threads are placed on the CPUs this process may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// Wherever the scheduler puts them (what users' servers do).
    #[default]
    Free,
    /// All of worker i's threads on CPU i (modulo the CPUs allowed): wakeups stay on a CPU.
    Together,
    /// Worker i's accepting thread on CPU i, its connecting threads on CPU i + 1: every
    /// connection wakes a thread on the other CPU.
    Apart,
}

/// Which thread of a worker is being placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The accepting (or, in the pingpong shape, the only) thread.
    Server,
    /// A connecting thread of the server shape.
    Connector,
}

impl Placement {
    /// Pins the calling thread, the `role` thread of worker `worker`, as `self` says.
    pub fn pin(self, worker: usize, role: Role) -> io::Result<()> {
        let step = match (self, role) {
            (Placement::Free, _) => return Ok(()),
            (Placement::Together, _) | (Placement::Apart, Role::Server) => 0,
            (Placement::Apart, Role::Connector) => 1,
        };
        let allowed = allowed_cpus()?;
        let cpu = allowed[(worker + step) % allowed.len()];
        // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET and sched_setaffinity read
        // and write only the set passed, whose size is given.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// The CPUs the calling thread may run on, in order.
fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: as in `Placement::pin`; CPU_ISSET reads the set sched_getaffinity filled.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &raw mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect();
        if cpus.is_empty() {
            return Err(io::Error::other("this process may run on no CPU"));
        }
        Ok(cpus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPU the calling thread is now allowed on, when it is exactly one.
    fn only_cpu() -> Option<usize> {
        match allowed_cpus().unwrap().as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    #[test]
    fn apart_puts_a_workers_connectors_on_the_next_cpu() {
        let all = allowed_cpus().unwrap();
        let (server, connector) = std::thread::scope(|s| {
            let server = s.spawn(|| {
                Placement::Apart.pin(0, Role::Server).unwrap();
                only_cpu()
            });
            let connector = s.spawn(|| {
                Placement::Apart.pin(0, Role::Connector).unwrap();
                only_cpu()
            });
            (server.join().unwrap(), connector.join().unwrap())
        });
        assert_eq!(server, Some(all[0]));
        assert_eq!(connector, Some(all[1 % all.len()]));
    }

    #[test]
    fn free_leaves_the_thread_where_it_may_run() {
        let before = allowed_cpus().unwrap();
        let after = std::thread::scope(|s| {
            s.spawn(|| {
                Placement::Free.pin(3, Role::Connector).unwrap();
                allowed_cpus().unwrap()
            })
            .join()
            .unwrap()
        });
        assert_eq!(before, after);
    }
}
