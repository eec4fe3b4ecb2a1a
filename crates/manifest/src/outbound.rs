//! Outbound HTTP grants: which origins a function may send `wasi:http` requests to.
//!
//! A rule is an origin pattern, `scheme://host[:port]`:
//! - `scheme` is `http` or `https`;
//! - `host` is a DNS name or an IP address; `*.example.com` matches every subdomain of
//!   `example.com` (not `example.com` itself);
//! - `port` is a number or `*`; without one, the scheme's default port (80, 443).
//!
//! Paths are not part of a grant: a function that may reach an origin may reach all of it.
//! Matching is on the request's URL as the guest wrote it (no DNS resolution), so a grant of
//! `http://127.0.0.1:8080` does not also grant `http://localhost:8080`.

use std::fmt;

/// One granted origin pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRule {
    https: bool,
    host: HostPattern,
    /// `None` is `*`: any port.
    port: Option<u16>,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*.suffix`: stored as `.suffix`.
    Subdomains(String),
}

impl OutboundRule {
    pub fn parse(text: &str) -> Result<OutboundRule, String> {
        let bad = |why: &str| {
            format!("{text:?} is not an origin like \"https://api.example.com\": {why}")
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let https = match scheme {
            "http" => false,
            "https" => true,
            _ => return Err(bad("the scheme must be http or https")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(bad(
                "a grant names an origin only, without path, query or user",
            ));
        }
        let (host, port) = split_host_port(rest).ok_or_else(|| bad("malformed host or port"))?;
        let port = match port {
            None => Some(if https { 443 } else { 80 }),
            Some("*") => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| bad("the port must be a number or *"))?,
            ),
        };
        let host = host.to_ascii_lowercase();
        let pattern = match host.strip_prefix("*.") {
            Some(suffix) if valid_host(suffix) => HostPattern::Subdomains(format!(".{suffix}")),
            Some(_) => return Err(bad("malformed host after `*.`")),
            None if valid_host(&host) => HostPattern::Exact(host),
            None => return Err(bad("malformed host")),
        };
        Ok(OutboundRule {
            https,
            host: pattern,
            port,
            text: text.to_owned(),
        })
    }

    /// Whether a request to `scheme://host:port` is covered by this grant. `host` is compared
    /// case-insensitively; `port` is the effective port (the scheme's default if the URL has none).
    pub fn allows(&self, https: bool, host: &str, port: u16) -> bool {
        if self.https != https || self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = host.to_ascii_lowercase();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match &self.host {
            HostPattern::Exact(h) => h.trim_start_matches('[').trim_end_matches(']') == host,
            HostPattern::Subdomains(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        }
    }
}

impl fmt::Display for OutboundRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `host[:port]`, with IPv6 literals in brackets.
fn split_host_port(text: &str) -> Option<(&str, Option<&str>)> {
    if let Some(after) = text.strip_prefix('[') {
        let end = after.find(']')?;
        let host = &text[..end + 2];
        return match &after[end + 1..] {
            "" => Some((host, None)),
            rest => Some((host, Some(rest.strip_prefix(':')?))),
        };
    }
    match text.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port))),
        None => Some((text, None)),
    }
}

fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::OutboundRule;

    fn rule(text: &str) -> OutboundRule {
        OutboundRule::parse(text).unwrap()
    }

    #[test]
    fn default_ports_and_exact_hosts() {
        let r = rule("https://api.example.com");
        assert!(r.allows(true, "api.example.com", 443));
        assert!(r.allows(true, "API.Example.com", 443));
        assert!(!r.allows(false, "api.example.com", 80));
        assert!(!r.allows(true, "api.example.com", 8443));
        assert!(!r.allows(true, "evil.example.com", 443));
        assert!(!r.allows(true, "api.example.com.evil.org", 443));
    }

    #[test]
    fn wildcards() {
        let r = rule("http://127.0.0.1:*");
        assert!(r.allows(false, "127.0.0.1", 1));
        assert!(r.allows(false, "127.0.0.1", 65535));
        assert!(!r.allows(false, "127.0.0.2", 80));
        let sub = rule("https://*.example.com:8443/");
        assert!(sub.allows(true, "a.example.com", 8443));
        assert!(sub.allows(true, "a.b.example.com", 8443));
        assert!(!sub.allows(true, "example.com", 8443));
        assert!(!sub.allows(true, "badexample.com", 8443));
    }

    #[test]
    fn ipv6() {
        let r = rule("http://[::1]:8080");
        assert!(r.allows(false, "[::1]", 8080));
        assert!(r.allows(false, "::1", 8080));
        assert!(!r.allows(false, "::1", 80));
    }

    #[test]
    fn malformed_rules_are_refused() {
        for text in [
            "example.com",
            "ftp://example.com",
            "https://example.com/path",
            "https://user@example.com",
            "https://example.com:port",
            "https://exa mple.com",
            "https://*.",
            "https://",
            "http://[::1",
            "http://example.com:70000",
        ] {
            assert!(
                OutboundRule::parse(text).is_err(),
                "{text} should be refused"
            );
        }
    }
}
