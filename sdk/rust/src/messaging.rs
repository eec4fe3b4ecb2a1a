//! Messages to your tenant's subjects, through `meshwa:platform/messaging`, for a function
//! granted `grants.publish` on a cluster (a server without a message bus refuses it at load).

use crate::bindings::meshwa::platform::messaging;

/// Publishes `body` with `headers` on `subject` (tokens of `a-z0-9-_` separated by `.`, no
/// wildcards). Returns once the bus has the message; delivery is at most once. An ungranted
/// subject, a bad header or a body over 1,000,000 bytes is an error, with the reason.
pub fn publish(subject: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<(), String> {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    messaging::publish(subject, &headers, body)
}
