use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a service refused or failed a request. Serialized as the JSON body of an error response,
/// so a distributed gateway can pass a downstream service's error on unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceError {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The input is malformed or asks for something impossible (unknown SKU, bad quantity).
    BadRequest,
    /// The token is missing, forged or expired.
    Unauthorized,
    /// A dependency (the store, a downstream service) could not be reached.
    Unavailable,
    /// Our own data is inconsistent (a stored record does not parse).
    Internal,
}

impl ServiceError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// The HTTP status a wrapper answers with.
    pub fn http_status(&self) -> u16 {
        match self.kind {
            ErrorKind::BadRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }

    /// The JSON body of an error response.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing two strings and an enum cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads an error response body; a body that is no `ServiceError` becomes an internal error
    /// quoting it.
    pub fn from_json(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_else(|_| {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
            Self::internal(format!("unexpected error body: {text}"))
        })
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for ServiceError {}
