//! What goes back on the client's queue: `{"request_id", "kind", "status", "data" | "error"}`.

use serde::Serialize;
use serde_json::Value;

use crate::types::RequestId;

/// The operation a request asked for; the same word names the route, the envelope, the handler and
/// the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Auth,
    Utils,
    Histories,
    Payments,
    /// A message whose route the engine does not know.
    Unknown,
}

impl Kind {
    pub fn parse(route: &str) -> Self {
        match route {
            "auth" => Self::Auth,
            "utils" => Self::Utils,
            "histories" => Self::Histories,
            "payments" => Self::Payments,
            _ => Self::Unknown,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Utils => "utils",
            Self::Histories => "histories",
            Self::Payments => "payments",
            Self::Unknown => "unknown",
        }
    }
}

/// Error codes of the contract. Clients branch on these; the message is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    AlreadyPaid,
    /// The request id was already used for a different request.
    Conflict,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reply {
    /// `null` only when the request's own id could not be read.
    pub request_id: Option<RequestId>,
    pub kind: Kind,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Reply {
    pub fn ok(request_id: RequestId, kind: Kind, data: Value) -> Self {
        Self {
            request_id: Some(request_id),
            kind,
            status: Status::Ok,
            data: Some(data),
            error: None,
        }
    }

    pub fn error(
        request_id: Option<RequestId>,
        kind: Kind,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Self {
        Self {
            request_id,
            kind,
            status: Status::Error,
            data: None,
            error: Some(ErrorBody {
                code,
                message: message.into(),
            }),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a reply always serialises")
    }
}
