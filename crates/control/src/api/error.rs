//! [`ApiError`]: every way a control-plane call fails, and the [`ErrorBody`] and status it
//! answers. The status says whose fault it is: 4xx the caller's, 5xx the host's. Errors from
//! the runtime keep their type here, so that [`meshwa_runtime::LoadError::fault`] decides.

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use meshwa_api::{ErrorBody, ErrorKind};
use meshwa_runtime::Fault;

use crate::store::Exhausted;
use crate::{ChangeError, PrepareError, StoreError};

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("a valid bearer token is required (Authorization: Bearer <token>)")]
    Unauthorized,
    #[error("this needs the operator's token")]
    Forbidden,
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("the upload is larger than this server's limit of {0} bytes")]
    PayloadTooLarge(u64),
    /// Too many of something at once (log followers); try again later.
    #[error("{0}")]
    TooManyRequests(String),
    /// The app was refused: every problem found.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The app could not be prepared: 422 if every problem is the client's, else 500.
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Host(String),
}

impl From<ChangeError> for ApiError {
    fn from(error: ChangeError) -> Self {
        match error {
            ChangeError::Invalid(errors) => ApiError::Invalid(errors),
            ChangeError::Static(m) => ApiError::Conflict(format!(
                "app {m} is served from the server's command line; change it there"
            )),
            ChangeError::NotFound(m) => ApiError::NotFound(format!("no app {m}")),
            ChangeError::Store(error) => ApiError::Store(error),
            ChangeError::Preload(error) => ApiError::Prepare(PrepareError::Load(vec![error])),
        }
    }
}

impl ApiError {
    /// The resource of the host that ran out, if that is why the call failed.
    fn exhausted(&self) -> Option<Exhausted> {
        match self {
            ApiError::Store(error) => error.exhausted(),
            _ => None,
        }
    }

    /// Whose fault the failure is.
    pub fn fault(&self) -> Fault {
        match self {
            ApiError::Prepare(error) => error.fault(),
            ApiError::Store(_) | ApiError::Host(_) => Fault::Host,
            _ => Fault::Client,
        }
    }

    /// The body this failure answers. A host failure's details go to the log, not the client.
    pub fn body(&self) -> ErrorBody {
        let (error, errors) = match self {
            ApiError::BadRequest(_) => (ErrorKind::BadRequest, Vec::new()),
            ApiError::Unauthorized => (ErrorKind::Unauthorized, Vec::new()),
            ApiError::Forbidden => (ErrorKind::Forbidden, Vec::new()),
            ApiError::NotFound(_) => (ErrorKind::NotFound, Vec::new()),
            ApiError::MethodNotAllowed => (ErrorKind::MethodNotAllowed, Vec::new()),
            ApiError::Conflict(_) => (ErrorKind::Conflict, Vec::new()),
            ApiError::PayloadTooLarge(_) => (ErrorKind::PayloadTooLarge, Vec::new()),
            ApiError::TooManyRequests(_) => (ErrorKind::TooManyRequests, Vec::new()),
            ApiError::Invalid(errors) => (ErrorKind::Invalid, errors.clone()),
            // The host's fault, and one that passes: the client may retry later.
            _ if self.exhausted() == Some(Exhausted::Disk) => {
                (ErrorKind::InsufficientStorage, Vec::new())
            }
            _ if self.exhausted() == Some(Exhausted::Descriptors) => {
                (ErrorKind::Unavailable, Vec::new())
            }
            ApiError::Prepare(error) if error.fault() == Fault::Client => {
                (ErrorKind::Invalid, error.messages())
            }
            ApiError::Prepare(_) | ApiError::Store(_) | ApiError::Host(_) => {
                (ErrorKind::Host, Vec::new())
            }
        };
        let message = match error {
            ErrorKind::Invalid => format!(
                "the app was refused: {} problem(s); nothing changed",
                errors.len()
            ),
            ErrorKind::Host => "internal error; see the server's log".to_owned(),
            ErrorKind::InsufficientStorage => {
                "the server's disk is full; nothing changed, try again later".to_owned()
            }
            ErrorKind::Unavailable => {
                "the server is out of file descriptors; nothing changed, try again later".to_owned()
            }
            _ => self.to_string(),
        };
        ErrorBody {
            error,
            message,
            errors,
        }
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let body = self.body();
        if body.error.status() >= 500 {
            tracing::error!(error = %self, "control plane: host error");
        }
        let status =
            StatusCode::from_u16(body.error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = super::json_response(status, &body);
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"meshwa\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use meshwa_runtime::LoadError;

    use super::*;

    fn missing_secret() -> LoadError {
        LoadError::MissingSecret {
            app: "acme/shop".into(),
            name: "key".into(),
            file: None,
        }
    }

    #[test]
    fn load_errors_answer_by_whose_fault_they_are() {
        let client = ApiError::Prepare(PrepareError::Load(vec![missing_secret()]));
        let body = client.body();
        assert_eq!((body.error, body.errors.len()), (ErrorKind::Invalid, 1));

        let host = ApiError::Prepare(PrepareError::Load(vec![LoadError::KeyValue(
            "disk full".into(),
        )]));
        let body = host.body();
        assert_eq!(body.error, ErrorKind::Host);
        assert!(body.errors.is_empty() && !body.message.contains("disk full"));

        // One host problem among the client's: the app could not be judged, so 5xx.
        let mixed = ApiError::Prepare(PrepareError::Load(vec![
            missing_secret(),
            LoadError::KeyValue("disk full".into()),
        ]));
        assert_eq!(
            mixed.into_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let task = ApiError::Prepare(PrepareError::Task("panicked".into()));
        assert_eq!(task.fault(), Fault::Host);
    }
}
