//! Host and service names for addresses and ports, as netstat shows them without `-n`.
//!
//! Names come from the C library's `getnameinfo`, so the hosts file, DNS and the services
//! file are consulted as the system is configured (nsswitch). Reverse DNS can take seconds,
//! so host lookups run on worker threads and [`Resolver::prepare`] waits at most its budget
//! (1 s by default): an address not resolved in time is shown as a number this time and by
//! name once its answer arrives. Every answer, including "no name", is cached.

use std::{
    collections::{HashMap, HashSet},
    ffi::CStr,
    net::IpAddr,
    sync::{
        Arc, Mutex,
        mpsc::{Receiver, Sender, channel},
    },
    thread,
    time::{Duration, Instant},
};

use crate::sockdiag::Proto;

/// How many reverse lookups may run at once.
const WORKERS: usize = 8;

/// Cached, time-bounded name lookups.
pub struct Resolver {
    budget: Duration,
    hosts: HashMap<IpAddr, Option<String>>,
    services: HashMap<(u16, Proto), Option<String>>,
    pending: HashSet<IpAddr>,
    jobs: Option<Sender<IpAddr>>,
    answers: Option<Receiver<(IpAddr, Option<String>)>>,
}

impl Resolver {
    /// A resolver that waits at most `budget` per [`prepare`](Self::prepare) call.
    pub fn new(budget: Duration) -> Self {
        Self {
            budget,
            hosts: HashMap::new(),
            services: HashMap::new(),
            pending: HashSet::new(),
            jobs: None,
            answers: None,
        }
    }

    fn start_workers(&mut self) -> Sender<IpAddr> {
        if let Some(jobs) = &self.jobs {
            return jobs.clone();
        }
        let (job_tx, job_rx) = channel::<IpAddr>();
        let (answer_tx, answer_rx) = channel();
        let job_rx = Arc::new(Mutex::new(job_rx));
        for _ in 0..WORKERS {
            let job_rx = Arc::clone(&job_rx);
            let answer_tx = answer_tx.clone();
            let spawned = thread::Builder::new()
                .name("enetstat-dns".into())
                .spawn(move || {
                    loop {
                        let job = match job_rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(addr) = job else { return };
                        let name = host_name(addr);
                        if answer_tx.send((addr, name)).is_err() {
                            return;
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!("cannot start a name-lookup thread: {e}");
            }
        }
        self.answers = Some(answer_rx);
        self.jobs = Some(job_tx.clone());
        job_tx
    }

    /// Looks up every address and port not yet cached, waiting at most the budget for
    /// host names. Service names come from the services file at once.
    pub fn prepare(
        &mut self,
        addrs: impl IntoIterator<Item = IpAddr>,
        ports: impl IntoIterator<Item = (u16, Proto)>,
    ) {
        let deadline = Instant::now() + self.budget;
        for key in ports {
            self.services
                .entry(key)
                .or_insert_with(|| service_name(key.0, key.1));
        }
        let new: Vec<IpAddr> = addrs
            .into_iter()
            .filter(|a| !a.is_unspecified())
            .filter(|a| !self.hosts.contains_key(a) && !self.pending.contains(a))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if !new.is_empty() {
            let jobs = self.start_workers();
            for addr in new {
                if jobs.send(addr).is_ok() {
                    self.pending.insert(addr);
                }
            }
        }
        let Some(answers) = &self.answers else { return };
        while !self.pending.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match answers.recv_timeout(left) {
                Ok((addr, name)) => {
                    self.pending.remove(&addr);
                    self.hosts.insert(addr, name);
                }
                Err(_) => break,
            }
        }
        if !self.pending.is_empty() {
            tracing::debug!(
                "{} host names not resolved within {:?}; shown as numbers",
                self.pending.len(),
                self.budget
            );
        }
    }

    /// The host name of an address, when known.
    pub fn host(&self, addr: IpAddr) -> Option<&str> {
        self.hosts.get(&addr)?.as_deref()
    }

    /// The service name of a port, when known.
    pub fn service(&self, port: u16, proto: Proto) -> Option<&str> {
        self.services.get(&(port, proto))?.as_deref()
    }
}

/// `getnameinfo` on an address and port; `None` when it fails.
fn name_info(addr: IpAddr, port: u16, flags: libc::c_int) -> Option<(String, String)> {
    let mut host = [0 as libc::c_char; 1025];
    let mut serv = [0 as libc::c_char; 64];
    // SAFETY: the sockaddr values are fully initialised (zeroed, then filled), their real
    // sizes are passed, and the output buffers are writable with their sizes passed.
    let rc = unsafe {
        match addr {
            IpAddr::V4(a) => {
                let mut sa: libc::sockaddr_in = std::mem::zeroed();
                sa.sin_family = libc::AF_INET as libc::sa_family_t;
                sa.sin_port = port.to_be();
                sa.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
                libc::getnameinfo(
                    (&raw const sa).cast(),
                    size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    host.as_mut_ptr(),
                    host.len() as libc::socklen_t,
                    serv.as_mut_ptr(),
                    serv.len() as libc::socklen_t,
                    flags,
                )
            }
            IpAddr::V6(a) => {
                let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
                sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sa.sin6_port = port.to_be();
                sa.sin6_addr.s6_addr = a.octets();
                libc::getnameinfo(
                    (&raw const sa).cast(),
                    size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                    host.as_mut_ptr(),
                    host.len() as libc::socklen_t,
                    serv.as_mut_ptr(),
                    serv.len() as libc::socklen_t,
                    flags,
                )
            }
        }
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: getnameinfo NUL-terminates both buffers on success.
    let text = |b: &[libc::c_char]| {
        unsafe { CStr::from_ptr(b.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    };
    Some((text(&host), text(&serv)))
}

/// The host name for an address (hosts file, then DNS); `None` when it has none.
fn host_name(addr: IpAddr) -> Option<String> {
    name_info(addr, 0, libc::NI_NAMEREQD | libc::NI_NUMERICSERV).map(|(h, _)| h)
}

/// The service name for a port from the services file; `None` when it has none.
fn service_name(port: u16, proto: Proto) -> Option<String> {
    if port == 0 {
        return None;
    }
    let dgram = match proto {
        Proto::Udp => libc::NI_DGRAM,
        Proto::Tcp => 0,
    };
    let (_, serv) = name_info(
        IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        port,
        libc::NI_NUMERICHOST | dgram,
    )?;
    (!serv.is_empty() && !serv.bytes().all(|b| b.is_ascii_digit())).then_some(serv)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn numbers_without_names_and_unspecified_addresses_stay_numbers() {
        let mut r = Resolver::new(Duration::from_millis(200));
        r.prepare(
            [IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
            [(0, Proto::Tcp), (65_432, Proto::Tcp)],
        );
        assert_eq!(r.host(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), None);
        assert_eq!(r.service(0, Proto::Tcp), None);
        assert_eq!(r.service(65_432, Proto::Tcp), None);
    }
}
