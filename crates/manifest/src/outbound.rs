//! Outbound HTTP grants: which origins a function may send `wasi:http` requests to.
//!
//! A rule is an origin pattern, `scheme://host[:port]`:
//! - `scheme` is `http` or `https`;
//! - `host` is a DNS name or an IP address; `*.example.com` matches every subdomain of
//!   `example.com` (not `example.com` itself); `*` matches every host;
//! - `port` is a number or `*`; without one, the scheme's default port (80, 443).
//!
//! Paths are not part of a grant: a function that may reach an origin may reach all of it.
//! Matching is on the request's URL as the guest wrote it (no DNS resolution), so a grant of
//! `http://127.0.0.1:8080` does not also grant `http://localhost:8080`. The address a name
//! resolves to is checked separately, when the connection is made: loopback, private and
//! link-local addresses are reachable only where the operator's policy names them
//! ([`OutboundRule::allows_address`], `crate::policy`).
//!
//! The operator's policy uses the same patterns to bound what tenants may grant at all:
//! [`OutboundRule::covers`] says whether one pattern includes everything another matches.

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
    /// `*`: every host.
    Any,
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
            _ if host == "*" => HostPattern::Any,
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

    /// `http://*:*` or `https://*:*`: every host and port of the scheme.
    pub fn any(https: bool) -> OutboundRule {
        OutboundRule {
            https,
            host: HostPattern::Any,
            port: None,
            text: format!("{}://*:*", if https { "https" } else { "http" }),
        }
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
            HostPattern::Any => true,
            HostPattern::Exact(h) => h.trim_start_matches('[').trim_end_matches(']') == host,
            HostPattern::Subdomains(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        }
    }

    /// Whether a connection to `address` for a request of scheme `https` is covered by this
    /// rule read as a destination: an exact IP host matches that address, `*` every address;
    /// a DNS name or `*.suffix` matches no address (a policy names private destinations by
    /// address, since names can be made to resolve anywhere).
    pub fn allows_address(&self, https: bool, address: std::net::SocketAddr) -> bool {
        if self.https != https || self.port.is_some_and(|p| p != address.port()) {
            return false;
        }
        match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(h) => h
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip == address.ip()),
            HostPattern::Subdomains(_) => false,
        }
    }

    /// Whether every request this rule's `other` allows is also allowed by this one: the
    /// operator's policy bounding what a tenant may grant.
    pub fn covers(&self, other: &OutboundRule) -> bool {
        if self.https != other.https {
            return false;
        }
        match (self.port, other.port) {
            (Some(mine), Some(theirs)) if mine != theirs => return false,
            (Some(_), None) => return false,
            _ => {}
        }
        match (&self.host, &other.host) {
            (HostPattern::Any, _) => true,
            (_, HostPattern::Any) => false,
            (HostPattern::Exact(mine), HostPattern::Exact(theirs)) => mine == theirs,
            (HostPattern::Exact(_), HostPattern::Subdomains(_)) => false,
            (HostPattern::Subdomains(suffix), HostPattern::Exact(host)) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
            (HostPattern::Subdomains(mine), HostPattern::Subdomains(theirs)) => {
                theirs.ends_with(mine.as_str())
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
    fn any_host() {
        assert_eq!(OutboundRule::any(true), rule("https://*:*"));
        let r = rule("https://*:*");
        assert!(r.allows(true, "api.example.com", 443));
        assert!(r.allows(true, "10.0.0.1", 8443));
        assert!(!r.allows(false, "api.example.com", 80));
        assert!(rule("https://*").allows(true, "x.org", 443));
        assert!(!rule("https://*").allows(true, "x.org", 8443));
    }

    #[test]
    fn covering_bounds_what_may_be_granted() {
        let covers = |policy: &str, grant: &str| rule(policy).covers(&rule(grant));
        assert!(covers("https://*:*", "https://api.example.com"));
        assert!(covers("https://*:*", "https://*.example.com:*"));
        assert!(!covers("https://*:*", "http://api.example.com"));
        assert!(covers("https://*", "https://api.example.com"));
        assert!(!covers("https://*", "https://api.example.com:8443"));
        assert!(!covers("https://*", "https://api.example.com:*"));
        assert!(covers("https://*.example.com", "https://a.b.example.com"));
        assert!(covers("https://*.example.com", "https://*.b.example.com"));
        assert!(!covers("https://*.example.com", "https://example.com"));
        assert!(!covers("https://*.example.com", "https://*"));
        assert!(!covers("https://api.example.com", "https://*.example.com"));
        assert!(covers("https://api.example.com", "https://API.example.com"));
    }

    #[test]
    fn destinations_are_addresses() {
        let at = |text: &str| text.parse::<std::net::SocketAddr>().unwrap();
        let r = rule("http://127.0.0.1:9000");
        assert!(r.allows_address(false, at("127.0.0.1:9000")));
        assert!(!r.allows_address(false, at("127.0.0.1:9001")));
        assert!(!r.allows_address(true, at("127.0.0.1:9000")));
        assert!(rule("http://[::1]:*").allows_address(false, at("[::1]:80")));
        assert!(!rule("http://localhost:9000").allows_address(false, at("127.0.0.1:9000")));
        assert!(rule("http://*:*").allows_address(false, at("10.1.2.3:80")));
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
