//! What a route's failure means for the message, and the error codes of the contract.

use serde::Serialize;

use crate::store;

/// Error codes of the contract. Clients branch on these; the message is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    Unauthorized,
    /// The caller's role, or the caller, may not do this.
    Forbidden,
    NotFound,
    AlreadyPaid,
    /// The request id was already used for a different request, or the request contradicts what
    /// is stored (a taken username, a bill sent again with other content).
    Conflict,
    Internal,
}

/// What happens to the message when a route fails.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The client's request cannot succeed as sent: it gets an error reply, the message is done.
    #[error("{message}")]
    Rejected { code: ErrorCode, message: String },
    /// A valid token presented with another reply queue than the one it was issued for. The
    /// token names its queue by a hash only, so the refusal can go only to the request's queue,
    /// and only if that queue exists already (a request without a valid token never creates one).
    #[error("the token was issued for another reply queue")]
    WrongQueue,
    /// A dependency failed; no reply, the message goes back to the queue and is tried again.
    #[error("transient failure")]
    Transient(#[source] anyhow::Error),
    /// A bug or broken invariant; trying again would fail the same way. The client gets `internal`.
    #[error("internal failure")]
    Internal(#[source] anyhow::Error),
}

impl HandlerError {
    pub fn rejected(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Rejected {
            code,
            message: message.into(),
        }
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::Internal(error.into())
    }

    /// The reply to a request without a valid token.
    pub fn unauthorized() -> Self {
        Self::rejected(
            ErrorCode::Unauthorized,
            "a valid bearer token is required; log in at /auth",
        )
    }
}

impl From<tokio_postgres::Error> for HandlerError {
    fn from(e: tokio_postgres::Error) -> Self {
        if store::is_transient(&e) {
            Self::Transient(e.into())
        } else {
            Self::Internal(e.into())
        }
    }
}

impl From<crate::password::CheckError> for HandlerError {
    /// Every slot busy for too long passes; a check that failed is a bug.
    fn from(e: crate::password::CheckError) -> Self {
        match e {
            crate::password::CheckError::Busy => Self::Transient(e.into()),
            crate::password::CheckError::Failed(e) => Self::Internal(e),
        }
    }
}

impl From<deadpool_postgres::PoolError> for HandlerError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Transient(e.into())
    }
}

pub type HandlerResult = Result<serde_json::Value, HandlerError>;
