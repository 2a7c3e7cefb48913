//! The routes: one module per operation, holding its request (the body and how it parses), its
//! handler and its reply data. The same word names the gateway route, the `route` attribute of
//! the envelope, the module, the reply's `kind` and the test file.
//!
//! Adding an operation is: its module here, one line in `routes!` below, its SQL (`sql/`), its
//! tests; then `qbill contract` writes its gateway entry, the web app's route map and the docs'
//! table from the module (CI runs `qbill contract --check`).
//!
//! Each module's `Request` implements [`Route`]: its path ([`Route::PATH`]), who may call it
//! ([`Route::CALLERS`]), its body type ([`Route::Body`], whose JSON Schema the gateway checks),
//! its reply type ([`Route::Reply`], whose JSON Schema gives the web app's types),
//! how it is read from the path and the body ([`Route::parse`]) and what it does
//! ([`Route::run`]). The token is checked, and the caller's role, before `run` is called. A
//! route imports no other route: what several share lives below them ([`crate::common`],
//! [`crate::idempotency`], [`crate::accounts`]).

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::accounts::session;
use crate::call::{Call, Path};
pub use crate::error::{ErrorCode, HandlerError, HandlerResult};
use crate::services::Services;
use crate::token::Session;
use crate::types::{ApartmentId, ParseError, Role};

/// Who may call a route.
#[derive(Debug, Clone, Copy)]
pub enum Callers {
    /// Anybody, with or without a token (logging in).
    Anyone,
    /// Holders of a valid token with one of these roles; others get `forbidden`.
    Roles(&'static [Role]),
}

/// One POST route of the contract.
#[derive(Debug, Clone)]
pub struct Operation {
    pub kind: Kind,
    /// The gateway path, with `{apartment_id}`, `{provider_id}` and `{bill_id}` segments.
    pub path: &'static str,
    pub summary: &'static str,
    pub callers: Callers,
    /// The body's JSON Schema (without `queue_name` and `request_id`, which every body carries).
    pub body: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
    /// The JSON Schema of its `ok` reply's data ([`crate::routes::Route::Reply`]), and that
    /// type's name (the web app's name for it).
    pub reply: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
    pub reply_name: fn() -> std::borrow::Cow<'static, str>,
}

impl Operation {
    /// Whether the route takes a token (and so requires the `Authorization` header).
    pub fn takes_token(&self) -> bool {
        matches!(self.callers, Callers::Roles(_))
    }

    /// The path's `{name}` segments, in order.
    pub fn path_parameters(&self) -> Vec<&'static str> {
        self.path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect()
    }
}

/// One operation's request.
pub trait Route: Sized {
    /// The gateway path of its POST, such as `/apartments/{apartment_id}/payments`.
    const PATH: &'static str;
    /// What it does, in a sentence of the contract (the gateway's summary, the docs' table).
    const SUMMARY: &'static str;
    const CALLERS: Callers;
    /// The body as the client sends it, less `queue_name` and `request_id`, which the envelope
    /// reads: its JSON Schema is the gateway's request model ([`crate::contract`]), and clients
    /// in Rust (the CLI) send it as it is.
    type Body: schemars::JsonSchema + serde::Serialize;
    /// The data of its `ok` reply: its JSON Schema gives the web app's reply types
    /// ([`crate::contract`]), and every reply of the route is built by [`Route::reply`] from
    /// one of these.
    type Reply: schemars::JsonSchema + serde::Serialize;

    /// Reads the request from the path and the body (without `queue_name` and `request_id`, which
    /// the envelope read).
    fn parse(path: &Path, body: Map<String, Value>) -> Result<Self, ParseError>;

    /// The apartment the request is about, for logs.
    fn apartment(&self) -> Option<ApartmentId> {
        None
    }

    /// Whether the route checks the caller's session epoch in its access check
    /// ([`common::authorize`], which then asks for it in the same query) rather than in a round
    /// trip of its own before it runs. Only for routes that call `authorize` before they read or
    /// change anything; a route that answers without having checked it gets an internal error.
    const EPOCH_AT_ACCESS: bool = false;

    fn run(&self, cx: &Context<'_>) -> impl Future<Output = HandlerResult> + Send;

    /// Whether the requests of this route that one receive brings are settled together, in one
    /// transaction with an outcome each ([`Route::run_batch`]), rather than each on its own
    /// connection. The engine checks each one's token and role first ([`admit_to_batch`]); the
    /// batch checks the session epochs ([`Batched::epoch_checked`]) with its first reads.
    const BATCHES: bool = false;

    /// Settles a batch of this route's requests, one result each, in their order, as if each had
    /// run alone: one's refusal never fails or delays the others. Only for a route that
    /// [`Route::BATCHES`].
    fn run_batch(
        services: &Services,
        batch: &[Batched<'_, Self>],
    ) -> impl Future<Output = Vec<HandlerResult>> + Send {
        let _ = services;
        let refused = batch
            .iter()
            .map(|_| {
                Err(HandlerError::internal(anyhow::anyhow!(
                    "a route that does not batch was given a batch"
                )))
            })
            .collect();
        std::future::ready(refused)
    }

    /// The reply's data: the one way a route turns its [`Route::Reply`] into the JSON it sends,
    /// so that what the contract declares is what the route answers.
    fn reply(data: &Self::Reply) -> HandlerResult {
        serde_json::to_value(data).map_err(HandlerError::internal)
    }
}

/// One request of a batch ([`Route::run_batch`]): its call, its request and the caller its token
/// names, admitted to the route's roles.
pub struct Batched<'a, R> {
    pub call: &'a Call,
    pub request: &'a R,
    pub session: Session,
    /// Whether the session's epoch was checked already; if not, the batch checks it.
    pub epoch_checked: bool,
}

/// What the engine does with a request: run it on its own, or settle it in a batch of its
/// route's requests with its caller's token checked for the queue and its role admitted (or
/// refused: the reply may create the queue when the token was good for it).
pub enum Admission {
    Alone,
    Batch(Session),
    Refused { error: HandlerError, vouched: bool },
}

/// Whether `request` goes into a batch ([`Route::BATCHES`], and tokens of the engine's own: a
/// Cognito identity is checked against the pool, one request at a time), and if so its caller.
pub fn admit_to_batch(services: &Services, call: &Call, request: &Request) -> Admission {
    let Callers::Roles(roles) = request.callers() else {
        return Admission::Alone;
    };
    if !request.batches() || services.cognito.is_some() {
        return Admission::Alone;
    }
    let session = match session::verify(services, call) {
        Ok(session) => session,
        Err(error) => {
            return Admission::Refused {
                error,
                vouched: false,
            };
        }
    };
    match session::admit(roles, &session) {
        Ok(()) => Admission::Batch(session),
        Err(error) => Admission::Refused {
            error,
            vouched: true,
        },
    }
}

/// What a route runs with: the services, the request's [`Call`] and, for routes that take a
/// token, the session it carries.
pub struct Context<'a> {
    pub services: &'a Services,
    pub call: &'a Call,
    session: Option<Session>,
    /// Whether the session's epoch is still to be checked ([`Route::EPOCH_AT_ACCESS`]).
    epoch_pending: std::sync::atomic::AtomicBool,
    /// Mails the route recorded in its transaction, sent once it committed.
    mails: std::sync::Mutex<Vec<i64>>,
    /// Whether the reply may create the reply queue ([`Context::vouch`]).
    vouched: std::sync::atomic::AtomicBool,
}

/// What a request's run came to.
#[derive(Debug)]
pub struct Ran {
    pub result: HandlerResult,
    /// Whether its reply may create the reply queue when it does not exist yet: the request
    /// carried a valid token for that queue, or the route vouched for it ([`Context::vouch`]).
    /// Any other reply goes only to a queue that exists, so nobody makes queues with requests
    /// that prove nothing.
    pub vouched: bool,
    /// The mails its committed transactions recorded, to send once the reply is on its way:
    /// the reply never waits for them, so its timing tells nothing of whether there was one to
    /// send (a reset requested for an address no account has answers as fast as one that mails).
    pub mails: Vec<i64>,
}

impl Context<'_> {
    /// Says the request has earned a reply queue whatever its outcome: for a route without a
    /// token, it proved a secret (a refresh token, a mailed token) or was counted by the route's
    /// per-source throttle (a login's check, a signup, a reset request), so the queues such
    /// requests can make are bounded by the secrets and the throttles.
    pub fn vouch(&self) {
        self.vouched
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Sends this outbox mail once the route's reply is sent. A route calls it once the
    /// transaction that recorded the mail committed, which may be a refusal's (a failed link's
    /// notice to the account's owner); a transaction rolled back takes its mail with it.
    pub fn mail_after_commit(&self, id: Option<i64>) {
        if let Some(id) = id {
            self.mails.lock().expect("mail list").push(id);
        }
    }

    /// Whether the caller's session epoch is still to be checked (by [`common::authorize`]).
    pub fn epoch_pending(&self) -> bool {
        self.epoch_pending
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The caller's session epoch was checked and found current.
    pub(crate) fn epoch_checked(&self) {
        self.epoch_pending
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// The caller, for a route with [`Callers::Roles`] (always checked before it runs).
    pub fn caller(&self) -> Result<&Session, HandlerError> {
        self.session.as_ref().ok_or_else(|| {
            HandlerError::internal(anyhow::anyhow!("a route without callers asked for one"))
        })
    }
}

/// Reads a body into the route's body type, whose fields say what the route accepts.
pub fn body<T: DeserializeOwned>(body: Map<String, Value>) -> Result<T, ParseError> {
    serde_json::from_value(Value::Object(body))
        .map_err(|e| ParseError::new(format!("invalid body: {e}")))
}

macro_rules! routes {
    ($($(#[$doc:meta])* $variant:ident => $module:ident,)*) => {
        $(pub mod $module;)*

        /// The operation a request asked for; the same word names the route, the envelope, the
        /// module and the reply.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind {
            $($(#[$doc])* $variant,)*
            /// A message whose route the engine does not know.
            Unknown,
        }

        impl Kind {
            /// Every known operation, in the order of this list.
            pub const ALL: &[Kind] = &[$(Kind::$variant,)*];

            pub fn parse(route: &str) -> Self {
                match route {
                    $(stringify!($module) => Self::$variant,)*
                    _ => Self::Unknown,
                }
            }

            pub fn as_str(&self) -> &'static str {
                match self {
                    $(Self::$variant => stringify!($module),)*
                    Self::Unknown => "unknown",
                }
            }
        }

        /// Every route of the contract, in the order of this list.
        pub fn operations() -> Vec<Operation> {
            vec![$(Operation {
                kind: Kind::$variant,
                path: <$module::Request as Route>::PATH,
                summary: <$module::Request as Route>::SUMMARY,
                callers: <$module::Request as Route>::CALLERS,
                body: <<$module::Request as Route>::Body as schemars::JsonSchema>::json_schema,
                reply: <<$module::Request as Route>::Reply as schemars::JsonSchema>::json_schema,
                reply_name: <<$module::Request as Route>::Reply as schemars::JsonSchema>::schema_name,
            },)*]
        }

        /// A parsed request of any route.
        #[derive(Debug)]
        pub enum Request {
            $($variant($module::Request),)*
        }

        impl Request {
            pub fn parse(kind: Kind, path: &Path, body: Map<String, Value>) -> Result<Self, ParseError> {
                match kind {
                    $(Kind::$variant => <$module::Request as Route>::parse(path, body).map(Self::$variant),)*
                    Kind::Unknown => Err(ParseError::new("unknown route")),
                }
            }

            pub fn kind(&self) -> Kind {
                match self {
                    $(Self::$variant(_) => Kind::$variant,)*
                }
            }

            pub fn apartment(&self) -> Option<ApartmentId> {
                match self {
                    $(Self::$variant(r) => r.apartment(),)*
                }
            }

            /// Checks the caller against the route's [`Route::CALLERS`], then runs it. (Boxed,
            /// as [`Request::run_batch`]: the routes' futures are proven `Send` here, once, not by
            /// every caller that spawns the engine's work.)
            pub fn run<'a>(&'a self, services: &'a Services, call: &'a Call) -> futures::future::BoxFuture<'a, Ran> {
                match self {
                    $(Self::$variant(r) => Box::pin(run(r, services, call)),)*
                }
            }

            pub fn callers(&self) -> Callers {
                match self {
                    $(Self::$variant(_) => <$module::Request as Route>::CALLERS,)*
                }
            }

            /// Whether its route settles its requests in batches ([`Route::BATCHES`]).
            pub fn batches(&self) -> bool {
                match self {
                    $(Self::$variant(_) => <$module::Request as Route>::BATCHES,)*
                }
            }

            /// Settles a batch of requests of one route ([`Route::run_batch`]), each admitted
            /// by [`admit_to_batch`]: one result each, in their order.
            /// (Boxed: one allocation a batch, and a future whose type does not grow with the
            /// number of routes.)
            pub fn run_batch<'a>(
                services: &'a Services,
                batch: &'a [Batched<'a, Request>],
            ) -> futures::future::BoxFuture<'a, Vec<HandlerResult>> {
                Box::pin(async move { match batch.first().map(|b| b.request) {
                    None => Vec::new(),
                    $(Some(Self::$variant(_)) => {
                        let typed: Vec<Batched<'_, $module::Request>> = batch
                            .iter()
                            .map(|b| match b.request {
                                Self::$variant(request) => Batched {
                                    call: b.call,
                                    request,
                                    session: b.session.clone(),
                                    epoch_checked: b.epoch_checked,
                                },
                                _ => unreachable!("a batch holds requests of one route"),
                            })
                            .collect();
                        <$module::Request as Route>::run_batch(services, &typed).await
                    })*
                } })
            }
        }
    };
}

routes! {
    /// Log in: `POST /auth`.
    Auth => auth,
    /// An apartment's open bills: `POST /apartments/{apartment_id}/utils`.
    Utils => utils,
    /// An apartment's settled bills: `POST /apartments/{apartment_id}/histories`.
    Histories => histories,
    /// Pay bills: `POST /apartments/{apartment_id}/payments`.
    Payments => payments,
    /// One payment and its history: `POST /apartments/{apartment_id}/payments/{payment_id}`.
    Payment => payment,
    /// A payment made elsewhere, recorded by an operator or the provider:
    /// `POST /apartments/{apartment_id}/payments/external`.
    PaymentsExternal => payments_external,
    /// A settled card payment given back, all or part: `POST /payments/{payment_id}/refund`.
    Refund => refund,
    /// Save a card (a SetupIntent), then keep it: `POST /me/payment-methods`.
    MePaymentMethods => me_payment_methods,
    /// The household's saved cards: `POST /me/payment-methods/list`.
    MePaymentMethodsList => me_payment_methods_list,
    /// Forget a saved card: `POST /me/payment-methods/{payment_method_id}/delete`.
    MePaymentMethodDelete => me_payment_method_delete,
    /// What a provider was owed, day by day: `POST /providers/{provider_id}/settlements`.
    Settlements => settlements,
    /// A provider's settlements as a document: `POST /providers/{provider_id}/documents`.
    ProviderDocuments => provider_documents,
    /// A provider's events, in order: `POST /providers/{provider_id}/events`.
    Events => events,
    /// Verify the profile's phone number with its texted code: `POST /me/phone/verify`.
    MePhoneVerify => me_phone_verify,
    /// Register a webhook endpoint: `POST /providers/{provider_id}/webhooks`.
    Webhooks => webhooks,
    /// A provider's webhook endpoints: `POST /providers/{provider_id}/webhooks/list`.
    WebhooksList => webhooks_list,
    /// Show or change an endpoint: `POST /providers/{provider_id}/webhooks/{webhook_id}`.
    Webhook => webhook,
    /// Delete an endpoint: `POST /providers/{provider_id}/webhooks/{webhook_id}/delete`.
    WebhookDelete => webhook_delete,
    /// A new signing secret: `POST /providers/{provider_id}/webhooks/{webhook_id}/rotate`.
    WebhookRotate => webhook_rotate,
    /// What was sent to an endpoint: `POST /providers/{provider_id}/webhooks/{webhook_id}/deliveries`.
    WebhookDeliveries => webhook_deliveries,
    /// Send an endpoint its events again: `POST /providers/{provider_id}/webhooks/{webhook_id}/replay`.
    WebhookReplay => webhook_replay,
    /// One bill with its lines and events: `POST /apartments/{apartment_id}/bills/{bill_id}`.
    Bill => bill,
    /// Attach a provider's account to an apartment: `POST /apartments/link`.
    ApartmentsLink => apartments_link,
    /// A provider sends its bills: `POST /providers/{provider_id}/bills`.
    BillsIngest => bills_ingest,
    /// A provider voids a bill: `POST /providers/{provider_id}/bills/{bill_id}/void`.
    BillVoid => bill_void,
    /// A provider's grace days and late fee: `POST /providers/{provider_id}/policy`.
    Policy => policy,
    /// An operator adds a provider: `POST /providers`.
    Provider => provider,
    /// An operator adds a user: `POST /users`.
    User => user,
    /// Anyone opens a household account: `POST /auth/signup`.
    Signup => signup,
    /// The link of the verification mail: `POST /auth/verify-email`.
    VerifyEmail => verify_email,
    /// Asks for a password reset mail: `POST /auth/password-reset`.
    PasswordReset => password_reset,
    /// Sets a new password with the reset mail's token: `POST /auth/password-reset/confirm`.
    PasswordResetConfirm => password_reset_confirm,
    /// Puts back the address a change replaced, with the security mail's link:
    /// `POST /auth/email-undo`.
    EmailUndo => email_undo,
    /// Trades a refresh token for a new pair (reply kind `auth`): `POST /auth/refresh`.
    Refresh => refresh,
    /// Ends a session: `POST /auth/logout`.
    Logout => logout,
    /// The caller's account: `POST /me`.
    Me => me,
    /// Changes the caller's email, name or notification preferences (reply kind `me`):
    /// `POST /me/profile`.
    MeProfile => me_profile,
    /// Changes the caller's password: `POST /me/password`.
    MePassword => me_password,
    /// Erases the caller's personal data: `POST /me/delete`.
    MeDelete => me_delete,
    /// The caller's inbox: `POST /me/notifications`.
    Notifications => notifications,
    /// The caller's live sessions: `POST /me/sessions`.
    MeSessions => me_sessions,
    /// A receipt, a bill or a statement as a file: `POST /apartments/{apartment_id}/documents`.
    Document => document,
}

impl Kind {
    /// The `kind` of the reply: the route's own word, except for the routes that answer with
    /// another route's data (`refresh` signs in like `auth`, `me_profile` shows `me`).
    pub fn reply_kind(self) -> Kind {
        match self {
            Self::Refresh => Self::Auth,
            Self::MeProfile | Self::MePhoneVerify => Self::Me,
            other => other,
        }
    }
}

impl serde::Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

async fn run<R: Route>(request: &R, services: &Services, call: &Call) -> Ran {
    // The epoch is checked with the route's access check, in the same query, when the route can.
    let at_access = R::EPOCH_AT_ACCESS && services.cognito.is_none();
    let session = match R::CALLERS {
        Callers::Anyone => None,
        Callers::Roles(roles) => {
            let session = if at_access {
                session::verify(services, call)
            } else {
                session::check(services, call).await
            };
            let session = match session {
                Ok(session) => session,
                Err(e) => {
                    return Ran {
                        result: Err(e),
                        vouched: false,
                        mails: Vec::new(),
                    };
                }
            };
            // A valid token for this queue: whatever comes next may be answered on it.
            if let Err(e) = session::admit(roles, &session) {
                return Ran {
                    result: Err(e),
                    vouched: true,
                    mails: Vec::new(),
                };
            }
            Some(session)
        }
    };
    let cx = Context {
        services,
        call,
        epoch_pending: (at_access && session.is_some()).into(),
        vouched: session.is_some().into(),
        session,
        mails: Default::default(),
    };
    let mut result = request.run(&cx).await;
    if result.is_ok() && cx.epoch_pending() {
        result = Err(HandlerError::internal(anyhow::anyhow!(
            "the route answered without checking the session epoch"
        )));
    }
    let mails = std::mem::take(&mut *cx.mails.lock().expect("mail list"));
    Ran {
        vouched: cx.vouched.load(std::sync::atomic::Ordering::Relaxed),
        result,
        mails,
    }
}
