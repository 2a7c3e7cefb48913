//! Every request a run sent and every reply it read, repeats and strays included: what the chaos
//! run's checks judge the engine by, afterwards.

use std::collections::HashMap;
use std::sync::Mutex;

use qbill_core::types::QueueName;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::mix::Op;
use crate::transport::ReplyHead;

/// A request as sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub request_id: Uuid,
    /// The reply queue it named.
    pub queue: QueueName,
    pub op: Op,
    pub apartment: i64,
    /// For a payment (a household's, or one made elsewhere), the bills in the order sent.
    pub bills: Vec<i64>,
    /// The transport took it (a request it refused was never on the queue).
    pub handed: bool,
}

/// A reply as read, on the queue it was read from.
#[derive(Debug, Clone)]
pub struct Read {
    pub queue: QueueName,
    pub request_id: Option<Uuid>,
    pub ok: bool,
    /// The error code of an error reply.
    pub code: Option<String>,
    pub payment_id: Option<Uuid>,
    pub total: Option<Decimal>,
    /// A refund's reply names its refund.
    pub refund_id: Option<Uuid>,
}

impl Read {
    pub fn of(queue: QueueName, reply: &ReplyHead) -> Self {
        let data = reply.data.as_ref();
        Self {
            queue,
            request_id: reply.request_id,
            ok: reply.status == "ok",
            code: reply.error.as_ref().map(|e| e.code.clone()),
            payment_id: data.and_then(|d| d.payment_id),
            total: data.and_then(|d| d.total),
            refund_id: data.and_then(|d| d.refund_id),
        }
    }
}

#[derive(Debug, Default)]
pub struct Journal {
    sent: Mutex<HashMap<Uuid, Sent>>,
    read: Mutex<Vec<Read>>,
}

impl Journal {
    pub fn sent(&self, sent: Sent) {
        self.sent
            .lock()
            .expect("journal")
            .insert(sent.request_id, sent);
    }

    pub fn read(&self, read: Read) {
        self.read.lock().expect("journal").push(read);
    }

    /// What was sent, by request id, and what was read, in the order read.
    pub fn take(&self) -> (HashMap<Uuid, Sent>, Vec<Read>) {
        (
            std::mem::take(&mut *self.sent.lock().expect("journal")),
            std::mem::take(&mut *self.read.lock().expect("journal")),
        )
    }
}
