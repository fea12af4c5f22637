//! The CSV header rows' shared parts. A transition's row and a lifecycle's row describe the
//! same socket in the same columns; those columns are named once here, so the two headers
//! cannot drift apart. (Each format's own test checks its header against the fields its rows
//! serialize.)

/// After the time: which socket, whose, and between which endpoints.
pub const SOCKET: [&str; 9] = [
    "cookie",
    "pid",
    "comm",
    "owner_exited",
    "family",
    "laddr",
    "lport",
    "raddr",
    "rport",
];

/// Last: the socket's cgroup, the container it names, and the row's id.
pub const CGROUP: [&str; 4] = ["cgroup", "cgroup_path", "container", "id"];

/// `parts` one after another, as one header. Evaluated at compile time, where a wrong `N`
/// fails the build.
pub const fn join<const N: usize>(parts: &[&[&'static str]]) -> [&'static str; N] {
    let mut header = [""; N];
    let mut at = 0;
    let mut p = 0;
    while p < parts.len() {
        let mut i = 0;
        while i < parts[p].len() {
            header[at] = parts[p][i];
            at += 1;
            i += 1;
        }
        p += 1;
    }
    assert!(at == N, "the header's length is not the sum of its parts");
    header
}

#[cfg(test)]
mod tests {
    use crate::render::{lifecycle::csv::CSV_FIELDS, transition::csv::FIELDS};

    /// The headers users parse (a stable interface), column for column, as they were before
    /// their shared parts were named once.
    #[test]
    fn the_headers_are_the_documented_columns() {
        assert_eq!(
            FIELDS.join(","),
            "time,ts_ns,cookie,pid,comm,owner_exited,family,laddr,lport,raddr,rport,old,new,\
             ms_in_old,netns,end,cgroup,cgroup_path,container,id"
        );
        assert_eq!(
            CSV_FIELDS.join(","),
            "time,cookie,pid,comm,owner_exited,family,laddr,lport,raddr,rport,lifetime_ms,\
             connect_ms,states,bytes_sent,bytes_received,retransmits,srtt_us,end,complete,\
             netns,cgroup,cgroup_path,container,id"
        );
    }
}
