//! The rules meshwa's two hosts apply alike: how one invocation of a function fails, whose fault
//! that is and what the client is told, and the sandbox limits that are not the manifest's.
//!
//! Shared by the Linux server (`meshwa-runtime`, `meshwa-gateway`) and the unikernel
//! (`unikernel/`), so that a trap, a timeout or a too-large body gets the same status, error
//! kind and message on both, and a guest meets the same ceilings. `no_std` with `alloc` for the
//! unikernel's sake.

#![no_std]

extern crate alloc;

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::{String, ToString};
use core::time::Duration;

/// Most table elements one instance may hold: far above what real programs use, far below what a
/// table-growth bomb would like (tables are host memory that max-memory does not count).
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Whether a table may grow to `desired` elements: within [`MAX_TABLE_ELEMENTS`] and the table's
/// own declared maximum. Both hosts' `ResourceLimiter::table_growing`.
pub fn table_growth_allowed(desired: usize, maximum: Option<usize>) -> bool {
    desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|max| desired <= max)
}

/// Whose fault an error is: decides between 4xx and 5xx, and who gets paged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request was bad (too large, malformed): 4xx.
    Client,
    /// The function misbehaved (trap, timeout, memory, no response): 5xx.
    Guest,
    /// The host could not serve (out of capacity, internal failure): 5xx.
    Host,
}

/// How one invocation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvokeError {
    #[error("request body exceeds the function's limit of {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The client did not finish sending the request body before the function's deadline
    /// (a CGI program's body is read whole before it starts).
    #[error("the request body did not arrive within the function's deadline of {0:?}")]
    RequestTimeout(Duration),
    #[error("function trapped: {0}")]
    Trap(String),
    #[error("function exceeded its deadline of {0:?}")]
    Timeout(Duration),
    #[error("function exceeded its memory limit of {limit} bytes: {detail}")]
    OutOfMemory { limit: u64, detail: String },
    #[error("function returned without setting a response")]
    NoResponse,
    #[error("function answered with an error: {0}")]
    GuestError(String),
    #[error("no instance slot became free before the deadline")]
    Overloaded,
    /// From outside: the tenant's quota and its queue are full; in-process: its quota is.
    #[error("tenant {tenant} is at its quota of {limit} live instances")]
    TenantQuota { tenant: String, limit: u32 },
    #[error(
        "tenant {tenant}'s live instances would hold more than its memory quota of {limit} bytes"
    )]
    TenantMemory { tenant: String, limit: u64 },
    /// A CGI program's stdout does not start with a valid CGI header block.
    #[error("the program's output is not a CGI response: {0}")]
    BadCgiOutput(String),
    #[error("internal error: {0}")]
    Host(String),
}

impl InvokeError {
    pub fn fault(&self) -> Fault {
        match self {
            InvokeError::PayloadTooLarge { .. }
            | InvokeError::BadRequest(_)
            | InvokeError::RequestTimeout(_)
            | InvokeError::TenantQuota { .. }
            | InvokeError::TenantMemory { .. } => Fault::Client,
            InvokeError::Trap(_)
            | InvokeError::Timeout(_)
            | InvokeError::OutOfMemory { .. }
            | InvokeError::NoResponse
            | InvokeError::GuestError(_)
            | InvokeError::BadCgiOutput(_) => Fault::Guest,
            InvokeError::Overloaded | InvokeError::Host(_) => Fault::Host,
        }
    }

    /// A short, stable name of the kind, for logs and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            InvokeError::PayloadTooLarge { .. } => "payload_too_large",
            InvokeError::BadRequest(_) => "bad_request",
            InvokeError::RequestTimeout(_) => "request_timeout",
            InvokeError::Trap(_) => "trap",
            InvokeError::Timeout(_) => "timeout",
            InvokeError::OutOfMemory { .. } => "out_of_memory",
            InvokeError::NoResponse => "no_response",
            InvokeError::GuestError(_) => "guest_error",
            InvokeError::BadCgiOutput(_) => "bad_cgi_output",
            InvokeError::Overloaded => "overloaded",
            InvokeError::TenantQuota { .. } => "tenant_quota",
            InvokeError::TenantMemory { .. } => "tenant_memory",
            InvokeError::Host(_) => "host",
        }
    }
}

/// The HTTP status for an invocation failure: 4xx for the client's fault, 5xx for the guest's or
/// the host's.
pub fn status_code(error: &InvokeError) -> u16 {
    match error {
        InvokeError::PayloadTooLarge { .. } => 413,
        InvokeError::BadRequest(_) => 400,
        InvokeError::RequestTimeout(_) => 408,
        InvokeError::TenantQuota { .. } | InvokeError::TenantMemory { .. } => 429,
        InvokeError::Timeout(_) => 504,
        InvokeError::BadCgiOutput(_) => 502,
        InvokeError::OutOfMemory { .. } | InvokeError::Overloaded => 503,
        other => match other.fault() {
            Fault::Client => 400,
            Fault::Guest | Fault::Host => 500,
        },
    }
}

/// What the client is told. A client's own mistake is explained in full; for a guest's or the
/// host's failure the details (trap messages, backtraces) stay in the log, found by error id.
pub fn public_message(error: &InvokeError) -> String {
    match error {
        InvokeError::Timeout(limit) => format!("the function exceeded its deadline of {limit:?}"),
        InvokeError::OutOfMemory { limit, .. } => {
            format!("the function exceeded its memory limit of {limit} bytes")
        }
        InvokeError::Trap(_) => "the function trapped".to_owned(),
        InvokeError::GuestError(_) => "the function answered with an error".to_owned(),
        InvokeError::BadCgiOutput(_) => {
            "the program's output does not start with a valid CGI header block".to_owned()
        }
        InvokeError::Host(_) => "internal error".to_owned(),
        other => other.to_string(),
    }
}

/// The JSON body of a failure: `{"error":kind,"error_id":...,"message":...}` and a newline (keys
/// in this order, as the Linux host has always written them).
pub fn error_body(kind: &str, message: &str, error_id: &str) -> String {
    let mut body = String::with_capacity(64 + kind.len() + message.len() + error_id.len());
    body.push_str("{\"error\":");
    push_json_string(&mut body, kind);
    body.push_str(",\"error_id\":");
    push_json_string(&mut body, error_id);
    body.push_str(",\"message\":");
    push_json_string(&mut body, message);
    body.push_str("}\n");
    body
}

/// A JSON string literal (RFC 8259 escapes). By hand: serde_json would be the only dependency of
/// this crate, for three strings.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            control if u32::from(control) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", u32::from(control)));
            }
            other => out.push(other),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_whose_fault_it_is() {
        assert_eq!(status_code(&InvokeError::PayloadTooLarge { limit: 1 }), 413);
        assert_eq!(status_code(&InvokeError::Trap("x".into())), 500);
        assert_eq!(
            status_code(&InvokeError::Timeout(Duration::from_secs(2))),
            504
        );
        assert_eq!(
            status_code(&InvokeError::OutOfMemory {
                limit: 1,
                detail: String::new()
            }),
            503
        );
        assert_eq!(status_code(&InvokeError::NoResponse), 500);
        assert_eq!(status_code(&InvokeError::BadRequest("x".into())), 400);
    }

    #[test]
    fn error_bodies_are_json_with_escapes() {
        let body = error_body("bad_request", "a \"quoted\"\nline\u{1}", "id-1");
        assert_eq!(
            body,
            "{\"error\":\"bad_request\",\"error_id\":\"id-1\",\"message\":\"a \\\"quoted\\\"\\nline\\u0001\"}\n"
        );
    }

    #[test]
    fn tables_grow_within_both_ceilings() {
        assert!(table_growth_allowed(MAX_TABLE_ELEMENTS, None));
        assert!(!table_growth_allowed(MAX_TABLE_ELEMENTS + 1, None));
        assert!(table_growth_allowed(10, Some(10)));
        assert!(!table_growth_allowed(11, Some(10)));
    }

    #[test]
    fn trap_details_stay_out_of_the_public_message() {
        let message = public_message(&InvokeError::Trap("secret backtrace".into()));
        assert_eq!(message, "the function trapped");
    }
}
