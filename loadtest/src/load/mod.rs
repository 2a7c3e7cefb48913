//! The load: simulated clients, each with its own reply queue and session, driven open-loop (a
//! target request rate, whatever the replies do) or closed-loop (each client keeps a number of
//! requests outstanding), with a ramp-up, a warm-up left out of the figures, and an end by time or
//! by count. [`households`] says who each client acts for and how a household pays.

mod households;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use qbill_core::types::QueueName;
use rand::{RngExt, SeedableRng};
use rust_decimal::Decimal;
use serde_json::json;
use tokio::sync::{Mutex, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::journal::{Journal, Read, Sent};
use crate::mix::{Mix, Op};
use crate::record::{Ending, Figures, Recorder};
use crate::transport::{Outgoing, ReplyHead, Transport};

/// The shape of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub clients: usize,
    /// Requests per second across all clients (open loop); `None` runs closed loop.
    pub rate: Option<f64>,
    /// Closed loop: requests each client keeps outstanding.
    pub in_flight: usize,
    pub ramp_up: Duration,
    pub warmup: Duration,
    /// How long to measure after the warm-up; with `requests`, whichever ends first.
    pub duration: Option<Duration>,
    /// How many measured requests to send.
    pub requests: Option<u64>,
    pub timeout: Duration,
    /// Seconds each poll of a reply queue may wait for a reply (0 to 20).
    pub poll_wait: u8,
    pub mix: Mix,
    /// Log every client in before the clock starts (not against the bare echo).
    pub log_in: bool,
    /// Clients share households two by two and pay from the oldest few unpaid bills, in any
    /// order, so that payments of one household collide as those of two devices would.
    pub contention: bool,
}

impl Plan {
    /// A generous guess of the requests a run sends, to seed enough bills.
    pub fn expected_requests(&self) -> u64 {
        let seconds =
            (self.warmup + self.duration.unwrap_or(Duration::from_secs(3600))).as_secs_f64();
        let by_time = (self.rate.unwrap_or(3_000.0) * seconds) as u64;
        match self.requests {
            Some(count) => by_time
                .min(count + (self.rate.unwrap_or(3_000.0) * self.warmup.as_secs_f64()) as u64),
            None => by_time,
        }
    }
}

/// A user the harness logs in as, with the bills it may pay.
#[derive(Debug, Clone)]
pub struct User {
    pub user_id: i64,
    pub username: String,
    pub password: String,
    pub apartment: i64,
    pub unpaid: Vec<i64>,
}

/// A receipt the harness holds: checked against the books after the run.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub request_id: Uuid,
    pub payment_id: Uuid,
    pub apartment: i64,
    pub bills: Vec<i64>,
    pub total: Decimal,
}

struct Pending {
    op: Op,
    sent: Instant,
    apartment: i64,
    bills: Vec<i64>,
    /// For a login: which of the client's users it logs in as; for the others, which one it
    /// acts for.
    user: usize,
    /// Sent again under the same request id, as a client that lost patience would.
    retried: bool,
    done: Option<oneshot::Sender<()>>,
}

/// A simulated client: one reply queue, and the households it acts for in turn. It logs in as each
/// of them once, before the clock starts, as a household's app does once per token lifetime; when
/// the current one has no unpaid bill left, it moves on to the next with that one's token, and
/// logs in again only for a token that expired (or none).
struct Client {
    queue: QueueName,
    /// With contention: the other client acting for the same households.
    partner: Option<usize>,
    users: Vec<User>,
    session: Mutex<Session>,
    pending: Mutex<HashMap<Uuid, Pending>>,
}

struct Session {
    current: usize,
    token: Option<String>,
    unpaid: Vec<i64>,
    /// A login as the next user is under way.
    switching: bool,
    /// Each household's token from its login, while it lasts.
    held: Vec<Option<Held>>,
    /// A login again as the current user, its token about to expire, is under way.
    renewing: bool,
}

/// A token a login gave, and when it stops working.
#[derive(Clone)]
struct Held {
    token: String,
    expires: Option<chrono::DateTime<chrono::Utc>>,
}

impl Held {
    /// Good for a while yet: a client logs in again a minute before its token expires.
    fn fresh(&self) -> bool {
        self.expires
            .is_none_or(|at| at - chrono::Duration::seconds(60) > chrono::Utc::now())
    }
}

/// What a caller may watch a run by.
#[derive(Default)]
pub struct Hooks {
    /// Told when the clock starts, once every client is logged in.
    pub started: Option<oneshot::Sender<Instant>>,
    /// Every request sent and every reply read.
    pub journal: Option<Arc<Journal>>,
}

/// What a run leaves behind.
pub struct Outcome {
    pub figures: Figures,
    pub receipts: Vec<Receipt>,
    /// Payments that were turned into `utils` because the client had no unpaid bill left.
    pub payments_without_bills: u64,
    /// Replies to requests already timed out, or to nobody the harness knows.
    pub stray_replies: u64,
    /// The clients' reply queues.
    pub queues: Vec<QueueName>,
}

struct Run {
    transport: Arc<Transport>,
    plan: Plan,
    recorder: std::sync::Mutex<Recorder>,
    receipts: std::sync::Mutex<Vec<Receipt>>,
    sent: AtomicU64,
    measured_sent: AtomicU64,
    answered: AtomicU64,
    timeouts: AtomicU64,
    payments_without_bills: AtomicU64,
    stray_replies: AtomicU64,
    journal: Option<Arc<Journal>>,
}

/// Runs the plan with one client per user (users are reused round-robin if there are fewer).
pub async fn run(transport: Arc<Transport>, plan: Plan, users: &[User]) -> anyhow::Result<Outcome> {
    run_with(transport, plan, users, Hooks::default()).await
}

/// [`run`], watched through `hooks`.
pub async fn run_with(
    transport: Arc<Transport>,
    plan: Plan,
    users: &[User],
    hooks: Hooks,
) -> anyhow::Result<Outcome> {
    if users.is_empty() {
        bail!("no users to log in as");
    }
    let households = if plan.contention {
        households::share(users, plan.clients)
    } else {
        households::assign(users, plan.clients)
    };
    let pairs = households::pairs(users.len(), plan.clients);
    let clients: Vec<Arc<Client>> = households
        .into_iter()
        .enumerate()
        .map(|(i, users)| {
            let partner = [i + pairs, i.wrapping_sub(pairs)]
                .into_iter()
                .find(|p| *p < plan.clients && *p != i);
            Arc::new(Client {
                queue: QueueName::parse(&Uuid::new_v4().to_string())
                    .expect("a UUID is a queue name"),
                partner: partner.filter(|_| plan.contention),
                session: Mutex::new(Session {
                    current: 0,
                    token: None,
                    unpaid: users[0].unpaid.clone(),
                    switching: false,
                    held: vec![None; users.len()],
                    renewing: false,
                }),
                users,
                pending: Mutex::default(),
            })
        })
        .collect();

    let started = Instant::now();
    let run = Arc::new(Run {
        transport: transport.clone(),
        recorder: std::sync::Mutex::new(Recorder::new(started, plan.warmup)),
        plan,
        receipts: Default::default(),
        sent: AtomicU64::new(0),
        measured_sent: AtomicU64::new(0),
        answered: AtomicU64::new(0),
        timeouts: AtomicU64::new(0),
        payments_without_bills: AtomicU64::new(0),
        stray_replies: AtomicU64::new(0),
        journal: hooks.journal,
    });

    let stop_polling = CancellationToken::new();
    let mut background = tokio::task::JoinSet::new();
    for client in &clients {
        transport.prepare(client.queue).await?;
        background.spawn(poll_replies(
            run.clone(),
            client.clone(),
            stop_polling.clone(),
        ));
    }
    if run.plan.log_in {
        log_in_everyone(&run, &clients).await?;
    }

    // The clock of the figures starts now: setup is not part of the run.
    let started = Instant::now();
    *run.recorder.lock().expect("recorder") = Recorder::new(started, run.plan.warmup);
    for counter in [&run.sent, &run.measured_sent, &run.answered, &run.timeouts] {
        counter.store(0, Ordering::Relaxed);
    }
    if let Some(started_tx) = hooks.started {
        let _ = started_tx.send(started);
    }
    background.spawn(expire(run.clone(), clients.clone(), stop_polling.clone()));
    let progress = progress_bar(&run.plan);
    background.spawn(show_progress(
        run.clone(),
        progress.clone(),
        started,
        stop_polling.clone(),
    ));

    match run.plan.rate {
        Some(rate) => open_loop(&run, &clients, rate, started).await,
        None => closed_loop(&run, &clients, started).await,
    }

    // Let what is in flight end, by a reply or by the timeout.
    let deadline = Instant::now() + run.plan.timeout + Duration::from_secs(1);
    while Instant::now() < deadline && in_flight(&clients).await > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_polling.cancel();
    progress.finish_and_clear();
    while background.join_next().await.is_some() {}

    let figures = run.recorder.lock().expect("recorder").figures();
    let receipts = std::mem::take(&mut *run.receipts.lock().expect("receipts"));
    Ok(Outcome {
        figures,
        receipts,
        payments_without_bills: run.payments_without_bills.load(Ordering::Relaxed),
        stray_replies: run.stray_replies.load(Ordering::Relaxed),
        queues: clients.iter().map(|c| c.queue).collect(),
    })
}

/// Nothing answered: every request measured, or every login, went without a reply within the
/// timeout. Whatever the thresholds, such a run fails (`qbill-loadtest run` exits with 98).
#[derive(Debug)]
pub struct Unanswered {
    /// `requests` or `logins`.
    pub what: &'static str,
    pub sent: u64,
    pub timeout: Duration,
}

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.sent == 0 {
            return write!(f, "no request was measured, so none was answered");
        }
        write!(
            f,
            "none of the {} {} was answered within {:.1} s: is anything consuming the request \
             queue, and do its replies reach the clients' queues?",
            self.sent,
            self.what,
            self.timeout.as_secs_f64()
        )
    }
}

impl std::error::Error for Unanswered {}

async fn in_flight(clients: &[Arc<Client>]) -> usize {
    let mut n = 0;
    for client in clients {
        n += client.pending.lock().await.len();
    }
    n
}

/// Logs every client in as each of its households before the clock starts, a few at a time
/// (logins are deliberately slow): a household logs in once per token lifetime, not once per
/// visit. The logins a run's mix asks for, and those of tokens that expire, are measured.
async fn log_in_everyone(run: &Arc<Run>, clients: &[Arc<Client>]) -> anyhow::Result<()> {
    let limit = Arc::new(tokio::sync::Semaphore::new(8));
    let answered_logins = Arc::new(AtomicU64::new(0));
    let mut logins = tokio::task::JoinSet::new();
    // Every client's first household first: a run that answers nothing says so at once.
    let most = clients.iter().map(|c| c.users.len()).max().unwrap_or(0);
    for user in 0..most {
        for client in clients.iter().filter(|c| user < c.users.len()) {
            let (run, client, limit) = (run.clone(), client.clone(), limit.clone());
            let answered_logins = answered_logins.clone();
            logins.spawn(async move {
                let _permit = limit.acquire_owned().await?;
                let (done, answered) = oneshot::channel();
                send_as(&run, &client, Op::Auth, Some(user), Some(done), None).await;
                let reply = tokio::time::timeout(run.plan.timeout, answered)
                    .await
                    .ok()
                    .and_then(Result::ok);
                if reply.is_none() && answered_logins.load(Ordering::Relaxed) == 0 {
                    // The first logins went out together: none of them answered means nothing
                    // answers.
                    return Err(Unanswered {
                        what: "logins",
                        sent: run.sent.load(Ordering::Relaxed),
                        timeout: run.plan.timeout,
                    }
                    .into());
                }
                let name = &client.users[user].username;
                reply.with_context(|| format!("no reply to {name}'s login"))?;
                answered_logins.fetch_add(1, Ordering::Relaxed);
                if client.session.lock().await.held[user].is_none() {
                    bail!(
                        "{name} could not log in (is the password {:?} right?)",
                        client.users[user].password
                    );
                }
                anyhow::Ok(())
            });
        }
    }
    while let Some(joined) = logins.join_next().await {
        joined??;
    }
    Ok(())
}

fn finished(run: &Run, started: Instant) -> bool {
    let elapsed = started.elapsed();
    let by_time = run
        .plan
        .duration
        .is_some_and(|d| elapsed >= run.plan.warmup + d);
    let by_count = run
        .plan
        .requests
        .is_some_and(|n| run.measured_sent.load(Ordering::Relaxed) >= n);
    by_time || by_count
}

/// Sends at the target rate whatever the replies do, spreading requests over the clients. Over
/// the ramp-up the rate grows linearly from 0, so the k-th request is due when the integral of
/// the rate reaches k.
async fn open_loop(run: &Arc<Run>, clients: &[Arc<Client>], rate: f64, started: Instant) {
    let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
    // Every send is awaited before the run ends: one still starting would go unanswered.
    let mut sends = tokio::task::JoinSet::new();
    for k in 0u64.. {
        while sends.try_join_next().is_some() {}
        if finished(run, started) {
            break;
        }
        let due =
            started + Duration::from_secs_f64(due_at(k, rate, run.plan.ramp_up.as_secs_f64()));
        tokio::time::sleep_until(due.into()).await;
        if due.elapsed() > Duration::from_millis(10) {
            run.recorder.lock().expect("recorder").late_send();
        }
        let client = clients[k as usize % clients.len()].clone();
        let op = run.plan.mix.choose(&mut rng);
        // Now and then the other device of the household pays the same bills at once.
        let twin = (op == Op::Payments && rng.random_bool(households::TWINS))
            .then(|| client.partner.map(|p| clients[p].clone()))
            .flatten();
        sends.spawn({
            let run = run.clone();
            async move {
                let paying = send(&run, &client, op, None, None).await;
                if let (Some(partner), Some(paying)) = (twin, paying) {
                    send(&run, &partner, Op::Payments, None, Some(paying)).await;
                }
            }
        });
    }
    while sends.join_next().await.is_some() {}
}

/// Seconds from the start at which request `k` is due: `rate * t^2 / (2 * ramp)` requests are due
/// by `t` during the ramp-up, `rate` per second after it.
fn due_at(k: u64, rate: f64, ramp: f64) -> f64 {
    let k = k as f64;
    let during_ramp = rate * ramp / 2.0;
    if k < during_ramp {
        (2.0 * ramp * k / rate).sqrt()
    } else {
        ramp + (k - during_ramp) / rate
    }
}

/// Each client keeps `in_flight` requests outstanding; clients join over the ramp-up.
async fn closed_loop(run: &Arc<Run>, clients: &[Arc<Client>], started: Instant) {
    let mut loops = tokio::task::JoinSet::new();
    let total = clients.len() * run.plan.in_flight;
    for (k, client) in clients
        .iter()
        .flat_map(|c| std::iter::repeat_n(c, run.plan.in_flight))
        .enumerate()
    {
        let (run, client) = (run.clone(), client.clone());
        let delay = run.plan.ramp_up.mul_f64(k as f64 / total as f64);
        loops.spawn(async move {
            tokio::time::sleep_until((started + delay).into()).await;
            let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
            while !finished(&run, started) {
                let op = run.plan.mix.choose(&mut rng);
                let (done, answered) = oneshot::channel();
                send(&run, &client, op, Some(done), None).await;
                let _ = answered.await;
            }
        });
    }
    while loops.join_next().await.is_some() {}
}

/// A payment as sent: the apartment and the bills.
type Paying = (i64, Vec<i64>);

/// Sends one request of `op` for `client`; `done` fires when it ends, however it ends. `twin`
/// makes it a payment of those bills of that apartment (if the client is acting for it). Returns
/// the payment sent, if it was one.
async fn send(
    run: &Arc<Run>,
    client: &Arc<Client>,
    op: Op,
    done: Option<oneshot::Sender<()>>,
    twin: Option<Paying>,
) -> Option<Paying> {
    send_as(run, client, op, None, done, twin).await
}

/// [`send`], as household `user` of the client's (a login before the clock) rather than the
/// current one.
async fn send_as(
    run: &Arc<Run>,
    client: &Arc<Client>,
    op: Op,
    user: Option<usize>,
    done: Option<oneshot::Sender<()>>,
    twin: Option<Paying>,
) -> Option<Paying> {
    let mut op = op;
    let mut bills = Vec::new();
    let (user_index, token) = {
        let mut session = client.session.lock().await;
        let mut user_index = user.unwrap_or(session.current);
        if user.is_none() && op != Op::Auth && !session.switching && !session.renewing {
            let current = session.current;
            if session.held[current].as_ref().is_some_and(|h| !h.fresh()) {
                // The token is about to expire: the household logs in again.
                session.renewing = true;
                op = Op::Auth;
            }
        }
        if op == Op::Auth || user.is_some() {
            // A login: as given, the one the mix asks for, or a renewal.
        } else if let Some((apartment, mut twin)) = twin {
            if client.users[user_index].apartment != apartment {
                return None;
            }
            session.unpaid.retain(|b| !twin.contains(b));
            twin.reverse();
            bills = twin;
        } else if op == Op::Payments {
            bills = pick(run, &mut session.unpaid);
            if bills.is_empty() && !session.switching && session.current + 1 < client.users.len() {
                // This household is paid up: on to the next one, with its token while it lasts.
                let next = session.current + 1;
                match session.held[next].clone().filter(Held::fresh) {
                    Some(held) => {
                        session.current = next;
                        session.unpaid = client.users[next].unpaid.clone();
                        session.token = Some(held.token);
                        user_index = next;
                        bills = pick(run, &mut session.unpaid);
                    }
                    None => {
                        session.switching = true;
                        user_index = next;
                        op = Op::Auth;
                    }
                }
            }
            if bills.is_empty() && op == Op::Payments {
                run.payments_without_bills.fetch_add(1, Ordering::Relaxed);
                op = Op::Utils;
            }
        }
        (user_index, session.token.clone())
    };
    let request_id = Uuid::new_v4();
    let user = &client.users[user_index];
    let mut body = json!({ "queue_name": client.queue, "request_id": request_id });
    match op {
        Op::Auth => {
            body["username"] = json!(user.username);
            body["password"] = json!(user.password);
        }
        Op::Payments => body["bills_id"] = json!(bills),
        // Reads carry nothing more; households send no other operation.
        _ => {}
    }
    let bills_sent = bills.clone();
    let sent = Instant::now();
    client.pending.lock().await.insert(
        request_id,
        Pending {
            op,
            sent,
            apartment: user.apartment,
            bills,
            user: user_index,
            retried: false,
            done,
        },
    );
    run.sent.fetch_add(1, Ordering::Relaxed);
    if run.recorder.lock().expect("recorder").measured(sent) {
        run.measured_sent.fetch_add(1, Ordering::Relaxed);
    }
    let handed = run
        .transport
        .send(Outgoing {
            route: op.as_str(),
            payment: None,
            apartment: (op != Op::Auth).then_some(user.apartment),
            token: token.as_deref(),
            body: body.to_string(),
        })
        .await;
    // Journaled once handed over: the checks afterwards do not count as lost what never went.
    if let Some(journal) = &run.journal {
        journal.sent(Sent {
            request_id,
            queue: client.queue,
            op,
            apartment: user.apartment,
            bills: bills_sent.clone(),
            handed: handed.is_ok(),
        });
    }
    if let Err(refused) = handed
        && let Some(pending) = client.pending.lock().await.remove(&request_id)
    {
        end(run, pending, Ending::Error(refused.0));
    }
    (op == Op::Payments).then_some((user.apartment, bills_sent))
}

/// The bills a household pays next: one, now and then two, of its newest unpaid (with contention,
/// from its oldest few, in any order).
fn pick(run: &Run, unpaid: &mut Vec<i64>) -> Vec<i64> {
    if run.plan.contention {
        households::oldest_in_any_order(unpaid)
    } else {
        let take = if rand::random_bool(0.25) { 2 } else { 1 }.min(unpaid.len());
        let keep = unpaid.len() - take;
        unpaid.split_off(keep)
    }
}

fn end(run: &Run, mut pending: Pending, ending: Ending) {
    let now = Instant::now();
    if ending == Ending::Timeout {
        run.timeouts.fetch_add(1, Ordering::Relaxed);
    } else {
        run.answered.fetch_add(1, Ordering::Relaxed);
    }
    run.recorder
        .lock()
        .expect("recorder")
        .end(pending.op, pending.sent, now, ending);
    if let Some(done) = pending.done.take() {
        let _ = done.send(());
    }
}

/// Long-polls one client's reply queue and settles its pending requests.
async fn poll_replies(run: Arc<Run>, client: Arc<Client>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let asked = Instant::now();
        // A poll under way is let finish (at most the poll wait): one dropped half-way may have
        // taken replies that would then stay invisible, or through the gateway be lost.
        let replies = run.transport.poll(client.queue, run.plan.poll_wait).await;
        let replies = match replies {
            Ok(replies) => replies,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), queue = %client.queue, "polling a reply queue failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        // Through the gateway, a queue that does not exist yet answers empty at once.
        if replies.is_empty() && asked.elapsed() < Duration::from_millis(100) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for reply in replies {
            settle(&run, &client, reply).await;
        }
    }
}

async fn settle(run: &Run, client: &Client, reply: ReplyHead) {
    if let Some(journal) = &run.journal {
        journal.read(Read::of(client.queue, &reply));
    }
    let Some(request_id) = reply.request_id else {
        run.stray_replies.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let Some(pending) = client.pending.lock().await.remove(&request_id) else {
        run.stray_replies.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let ending = if reply.status == "ok" {
        Ending::Ok
    } else {
        Ending::Error(
            reply
                .error
                .map_or_else(|| "unreadable".to_owned(), |e| e.code),
        )
    };
    let data = reply.data.unwrap_or_default();
    match (pending.op, &ending) {
        (Op::Auth, ending) => {
            let mut session = client.session.lock().await;
            let ok = *ending == Ending::Ok;
            if ok && let Some(token) = &data.token {
                session.held[pending.user] = Some(Held {
                    token: token.clone(),
                    expires: data.expires_at,
                });
            }
            if pending.user == session.current {
                session.renewing = false;
                if ok {
                    session.token = data.token;
                }
            } else if pending.user == session.current + 1 && session.switching {
                session.switching = false;
                if ok {
                    session.current = pending.user;
                    session.unpaid = client.users[pending.user].unpaid.clone();
                    session.token = data.token;
                }
            }
            // A login as a household the client has left answers too late to matter.
        }
        (Op::Payments, Ending::Ok) => {
            let receipt = Receipt {
                request_id,
                payment_id: data.payment_id.unwrap_or_default(),
                apartment: pending.apartment,
                bills: pending.bills.clone(),
                total: data.total.unwrap_or_default(),
            };
            run.receipts.lock().expect("receipts").push(receipt);
        }
        _ => {}
    }
    end(run, pending, ending);
}

/// Ends requests that had no reply within the timeout.
async fn expire(run: Arc<Run>, clients: Vec<Arc<Client>>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    while !stop.is_cancelled() {
        tick.tick().await;
        for client in &clients {
            let expired: Vec<Pending> = {
                let mut pending = client.pending.lock().await;
                let late: Vec<Uuid> = pending
                    .iter()
                    .filter(|(_, p)| p.sent.elapsed() >= run.plan.timeout)
                    .map(|(id, _)| *id)
                    .collect();
                late.iter().filter_map(|id| pending.remove(id)).collect()
            };
            if run.plan.contention {
                households::resend_unanswered_payments(&run, client).await;
            }
            for pending in expired {
                if pending.op == Op::Auth {
                    // A move to the next household that timed out may be tried again.
                    let mut session = client.session.lock().await;
                    if pending.user == session.current + 1 {
                        session.switching = false;
                    }
                    if pending.user == session.current {
                        session.renewing = false;
                    }
                }
                end(&run, pending, Ending::Timeout);
            }
        }
    }
}

fn progress_bar(plan: &Plan) -> ProgressBar {
    let bar = match plan.duration {
        Some(duration) => ProgressBar::new((plan.warmup + duration).as_secs()),
        None => ProgressBar::new(plan.requests.unwrap_or(0)),
    };
    let unit = if plan.duration.is_some() {
        "s"
    } else {
        "requests"
    };
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {unit} {{msg}}"
        ))
        .expect("a valid template"),
    );
    bar
}

async fn show_progress(run: Arc<Run>, bar: ProgressBar, started: Instant, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last = (Instant::now(), 0u64);
    while !stop.is_cancelled() {
        tick.tick().await;
        let answered = run.answered.load(Ordering::Relaxed);
        let rate = (answered - last.1) as f64 / last.0.elapsed().as_secs_f64();
        last = (Instant::now(), answered);
        let phase = if started.elapsed() < run.plan.warmup {
            "warm-up"
        } else {
            "measuring"
        };
        bar.set_position(if run.plan.duration.is_some() {
            started.elapsed().as_secs()
        } else {
            run.measured_sent.load(Ordering::Relaxed)
        });
        bar.set_message(format!(
            "{phase}: sent {} answered {answered} timeouts {} ({rate:.0} replies/s)",
            run.sent.load(Ordering::Relaxed),
            run.timeouts.load(Ordering::Relaxed),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::due_at;

    #[test]
    fn the_rate_ramps_up_linearly_then_holds() {
        // 100/s after a 2 s ramp: 100 requests are due during the ramp, 100 per second after.
        assert_eq!(due_at(0, 100.0, 2.0), 0.0);
        assert!((due_at(25, 100.0, 2.0) - 1.0).abs() < 1e-9);
        assert!((due_at(100, 100.0, 2.0) - 2.0).abs() < 1e-9);
        assert!((due_at(200, 100.0, 2.0) - 3.0).abs() < 1e-9);
        // Without a ramp, evenly spaced from the start.
        assert!((due_at(50, 100.0, 0.0) - 0.5).abs() < 1e-9);
    }
}
