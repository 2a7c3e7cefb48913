//! Background jobs: work no client asked for, run on a schedule. Each is idempotent and safe to
//! run twice at once; `qbill jobs <name>` runs one once, the worker pool runs them on a timer
//! (with jitter), and on AWS an EventBridge rule invokes the Lambda with `{"qbill": "<name>"}`.
//!
//! (The reply-queue sweep is one too, but it needs SQS: it lives in `qbill-sqs`.)

pub mod due_soon;
pub mod events;
pub mod expire_payments;
pub mod notify;
pub mod overdue;
pub mod reconcile;
pub mod settle;
