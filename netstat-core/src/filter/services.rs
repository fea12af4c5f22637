//! Service names for ports (`:https`), read from the text of an /etc/services file (reading
//! the file is netstat-user's `filter::parse`).

/// Looks a TCP service name (or alias) up in the text of an `/etc/services` file.
pub fn lookup_in(services: &str, name: &str) -> Option<u16> {
    services.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let service = fields.next()?;
        let (port, proto) = fields.next()?.split_once('/')?;
        if proto != "tcp" {
            return None;
        }
        let named = service == name || fields.any(|alias| alias == name);
        named.then(|| port.parse().ok()).flatten()
    })
}

/// A few services every system knows, for systems without /etc/services (minimal
/// containers).
pub const FALLBACK: &str = "ftp 21/tcp\nssh 22/tcp\ntelnet 23/tcp\nsmtp 25/tcp\ndomain 53/tcp\n\
http 80/tcp www\npop3 110/tcp\nimap 143/tcp\nldap 389/tcp\nhttps 443/tcp\nsubmission 587/tcp\n\
imaps 993/tcp\npop3s 995/tcp\nmysql 3306/tcp\npostgresql 5432/tcp postgres\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_aliases_and_protocols() {
        let text = "# comment\nhttp\t\t80/tcp\t\twww # WorldWideWeb\nhttp 80/udp\n\
                    syslog 514/udp\nshell 514/tcp cmd\n";
        assert_eq!(lookup_in(text, "http"), Some(80));
        assert_eq!(lookup_in(text, "www"), Some(80));
        assert_eq!(lookup_in(text, "cmd"), Some(514));
        assert_eq!(lookup_in(text, "syslog"), None, "udp only");
        assert_eq!(
            lookup_in(text, "WorldWideWeb"),
            None,
            "comments are not aliases"
        );
        assert_eq!(lookup_in(FALLBACK, "postgres"), Some(5432));
    }
}
