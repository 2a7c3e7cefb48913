//! What goes back on the client's queue: `{"request_id", "kind", "status", "data" | "error"}`.

use serde::Serialize;
use serde_json::Value;

pub use crate::common::MAX_REPLY_BYTES;
pub use crate::error::ErrorCode;
pub use crate::routes::Kind;
use crate::types::RequestId;

/// Error messages are cut to this many characters: a parse error may quote the client's input.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 1000;

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
                message: cut(message.into()),
            }),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a reply always serialises")
    }

    /// The reply and the JSON that goes on the queue, never over [`MAX_REPLY_BYTES`]: a reply
    /// that would be is replaced by an `internal` error reply, and `oversized` says how large it
    /// was (the caller logs and counts it).
    pub fn seal(self) -> Sealed {
        let body = self.to_json();
        if body.len() <= MAX_REPLY_BYTES {
            return Sealed {
                reply: self,
                body,
                oversized: None,
            };
        }
        let reply = Reply::error(
            self.request_id,
            self.kind,
            ErrorCode::Internal,
            format!(
                "the answer ({} bytes) was too large to send; this is a bug, please report it",
                body.len()
            ),
        );
        Sealed {
            body: reply.to_json(),
            reply,
            oversized: Some(body.len()),
        }
    }
}

/// A reply ready for the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Sealed {
    pub reply: Reply,
    /// The reply's JSON, at most [`MAX_REPLY_BYTES`].
    pub body: String,
    /// The size of the reply this one replaced, if it was too large to send.
    pub oversized: Option<usize>,
}

/// Cuts a message to [`MAX_ERROR_MESSAGE_CHARS`] characters.
fn cut(mut message: String) -> String {
    if let Some((at, _)) = message.char_indices().nth(MAX_ERROR_MESSAGE_CHARS) {
        message.truncate(at);
        message.push('…');
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_too_large_to_send_becomes_an_internal_error_that_fits() {
        let request = RequestId(uuid::Uuid::new_v4());
        let big = Reply::ok(
            request,
            Kind::Utils,
            serde_json::json!({ "bills": "x".repeat(MAX_REPLY_BYTES) }),
        );
        let sealed = big.seal();
        assert!(sealed.oversized.unwrap() > MAX_REPLY_BYTES);
        assert!(sealed.body.len() < 1024);
        assert_eq!(sealed.reply.request_id, Some(request));
        assert_eq!(
            sealed.reply.error.as_ref().unwrap().code,
            ErrorCode::Internal
        );
        assert_eq!(sealed.body, sealed.reply.to_json());

        let small = Reply::ok(request, Kind::Utils, serde_json::json!({ "bills": [] }));
        let sealed = small.clone().seal();
        assert_eq!((sealed.reply, sealed.oversized), (small, None));
    }

    #[test]
    fn error_messages_that_quote_long_input_are_cut() {
        let quoted = format!("invalid type: string \"{}\"", "\u{1}".repeat(60_000));
        let reply = Reply::error(None, Kind::Payments, ErrorCode::InvalidRequest, quoted);
        let message = &reply.error.as_ref().unwrap().message;
        assert_eq!(message.chars().count(), MAX_ERROR_MESSAGE_CHARS + 1);
        assert!(
            reply.to_json().len() < 8 * 1024,
            "control characters escape to 6 bytes each"
        );
    }
}
