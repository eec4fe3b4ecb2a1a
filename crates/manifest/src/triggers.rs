//! What starts a function besides HTTP requests and in-process calls: a schedule (`cron`) and
//! messages on a subject (`subscribe`), and the subjects a function may publish to
//! (`grants.publish`).
//!
//! Subjects are the tenant's own: `orders.created` in tenant `acme`'s manifest is
//! `acme.orders.created` on the message bus, so no tenant can read or write another's messages,
//! whatever it writes. A subject is 1 to 16 tokens of `[a-z0-9_-]` separated by `.`; in
//! `subscribe` and `grants.publish`, a token may be `*` (any one token) and the last may be `>`
//! (one or more tokens), as in NATS.

use std::str::FromStr;

/// Longest subject, in bytes.
pub const MAX_SUBJECT: usize = 200;
const MAX_TOKENS: usize = 16;

/// A subject or subject pattern of a tenant's namespace (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject(String);

impl Subject {
    /// Parses a subject; `wildcards` allows `*` and a final `>`.
    pub fn new(text: &str, wildcards: bool) -> Result<Subject, String> {
        let refuse = |why: &str| Err(format!("invalid subject {text:?}: {why}"));
        if text.is_empty() || text.len() > MAX_SUBJECT {
            return refuse(&format!("subjects are 1 to {MAX_SUBJECT} bytes"));
        }
        let tokens: Vec<&str> = text.split('.').collect();
        if tokens.len() > MAX_TOKENS {
            return refuse(&format!("at most {MAX_TOKENS} tokens"));
        }
        for (i, token) in tokens.iter().enumerate() {
            match *token {
                "*" if wildcards => {}
                ">" if wildcards && i + 1 == tokens.len() => {}
                "*" | ">" if !wildcards => return refuse("wildcards are not allowed here"),
                ">" => return refuse("`>` may only be the last token"),
                token
                    if !token.is_empty()
                        && token.bytes().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                        }) => {}
                _ => {
                    return refuse(
                        "tokens are a-z, 0-9, '-' and '_', separated by '.' (wildcards: '*', a final '>')",
                    );
                }
            }
        }
        Ok(Subject(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this pattern matches the concrete subject `subject`.
    pub fn matches(&self, subject: &str) -> bool {
        let mut pattern = self.0.split('.');
        let mut tokens = subject.split('.');
        loop {
            match (pattern.next(), tokens.next()) {
                (Some(">"), Some(_)) => return true,
                (Some("*"), Some(_)) => {}
                (Some(p), Some(t)) if p == t => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A schedule in the `cron` crate's syntax: seconds, minutes, hours, day of month, month, day of
/// week and an optional year, in UTC (`0 */5 * * * *`: every five minutes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(String);

impl Schedule {
    pub fn new(text: &str) -> Result<Schedule, String> {
        cron::Schedule::from_str(text).map_err(|e| {
            // The parser's message quotes the input with a caret on lines of their own.
            let e = e.to_string();
            let why = e.lines().last().unwrap_or_default();
            format!("invalid schedule {text:?}: {why} (seconds minutes hours day-of-month month day-of-week [year], UTC)")
        })?;
        Ok(Schedule(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parsed schedule (it parsed when this was made).
    pub fn parsed(&self) -> Option<cron::Schedule> {
        cron::Schedule::from_str(&self.0).ok()
    }
}

/// What starts a function besides HTTP requests and in-process calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Triggers {
    /// Fired once per tick of this schedule (once for a whole cluster).
    pub cron: Option<Schedule>,
    /// Messages on this subject of the tenant's (each handled by one node of a cluster).
    pub subscribe: Option<Subject>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_patterns() {
        assert!(Subject::new("orders.created", false).is_ok());
        assert!(Subject::new("orders.*", false).is_err());
        assert!(Subject::new("orders.>.x", true).is_err());
        assert!(Subject::new("Orders", true).is_err());
        assert!(Subject::new("a..b", true).is_err());
        assert!(Subject::new("", true).is_err());
        let pattern = Subject::new("orders.*.eu", true).unwrap();
        assert!(pattern.matches("orders.new.eu"));
        assert!(!pattern.matches("orders.new.us"));
        assert!(!pattern.matches("orders.new"));
        let all = Subject::new("orders.>", true).unwrap();
        assert!(all.matches("orders.new.eu"));
        assert!(!all.matches("orders"));
        assert!(Subject::new("orders", true).unwrap().matches("orders"));
    }

    #[test]
    fn schedules() {
        assert!(Schedule::new("0 */5 * * * *").is_ok());
        assert!(Schedule::new("*/2 * * * * *").unwrap().parsed().is_some());
        let error = Schedule::new("every minute").unwrap_err();
        assert!(error.contains("seconds minutes hours"), "{error}");
    }
}
