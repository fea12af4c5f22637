//! The filter language ([`netstat_core::filter`]) with this system's names: service names
//! from /etc/services, cgroup paths from the cgroup tree.

use std::sync::OnceLock;

pub use netstat_core::filter::*;

/// Parses a filter expression; the empty string matches everything. Service names are
/// looked up in /etc/services, cgroup paths in the cgroup tree.
pub fn parse(text: &str) -> Result<Filter, ParseError> {
    Filter::parse_with_cgroups(text, &service_port, &crate::cgroup::id_of)
}

/// Parses the words of a command line, joined with spaces as ss does
/// (`enetstat watch dport = :443`).
pub fn from_words<S: AsRef<str>>(words: &[S]) -> Result<Filter, ParseError> {
    let text: Vec<&str> = words.iter().map(AsRef::as_ref).collect();
    parse(&text.join(" "))
}

/// The TCP port of a service name: /etc/services first, then a short built-in list.
pub fn service_port(name: &str) -> Option<u16> {
    static SERVICES: OnceLock<String> = OnceLock::new();
    let text =
        SERVICES.get_or_init(|| std::fs::read_to_string("/etc/services").unwrap_or_default());
    services::lookup_in(text, name).or_else(|| services::lookup_in(services::FALLBACK, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_names_resolve_everywhere() {
        assert_eq!(service_port("https"), Some(443));
        assert_eq!(service_port("ssh"), Some(22));
        assert_eq!(service_port("no-such-service"), None);
    }

    #[test]
    fn system_service_names_resolve() {
        let f = parse("dport = :https").unwrap();
        assert_eq!(f.to_string(), "dport = :443");
        let f = from_words(&["dport", "=", ":ssh", "and", "state", "established"]).unwrap();
        assert_eq!(f.to_string(), "dport = :22 and state established");
    }

    #[test]
    fn cgroups_by_path_on_this_system() {
        let err = parse("cgroup /no/such/cgroup/anywhere").unwrap_err();
        assert!(err.to_string().contains("a cgroup id or the path"), "{err}");
        if let Some(root) = crate::cgroup::id_of("/") {
            assert_eq!(
                parse("cgroup /").unwrap(),
                parse(&format!("cgroup {root}")).unwrap()
            );
        }
    }
}
