// The replies of the HTTP contract (docs/contract.md), by reply `kind`. Replies travel on the
// client's reply queue, which the gateway declares only as a list of objects: their data types
// are written by `qbill contract` from the routes' reply types, between the markers (CI fails
// when they drift); the envelope around them is below. Amounts are decimal strings with two
// places, never numbers.

/** `YYYY-MM-DD`. */
export type IsoDate = string;
/** An RFC 3339 instant. */
export type Instant = string;
export type Uuid = string;

// contract:begin
/** An account's code as the client gets it. */
export interface AccountCode {
  account_number: string;
  /**
   * `None` on a repeat when the code is no longer the account's (used since, or the signing
   * key rotated): never a code that does not work.
   */
  activation_code: string | null;
  note?: string | null;
}

export type Amount = string;

export interface Apartment {
  address: string;
  id: ApartmentId;
}

/** An apartment, as named in the request path. */
export type ApartmentId = number;

/** One attempt. */
export interface Attempt {
  at: Instant;
  duration_ms: number;
  /** Why it did not count: the status and the start of the answer, or why there was none. */
  error: string | null;
  /** The endpoint's HTTP status, when it answered. */
  status_code: number | null;
}

export interface AuthData {
  /** By id; as many as one page carries (see [`crate::common::page_len`]). */
  apartments: Apartment[];
  expires_at: Instant;
  /** The user owns more apartments than one page carries (500, fewer with long addresses). */
  more_apartments?: boolean;
  refresh_expires_at: Instant;
  /** Trades for a new pair at `/auth/refresh`, once. */
  refresh_token: string;
  token: string;
  token_type: string;
  user: User;
}

/** A bill as clients see it, in `utils` and (with its payment) in `histories`. */
export interface Bill {
  amount: Amount;
  bill_id: BillId;
  currency: Currency;
  /**
   * Whole days since the due date for an overdue bill, else 0; counted when the bill is read
   * (a cached copy keeps the 0 it was stored with, see [`BillView::count_days_overdue`]).
   */
  days_overdue: number;
  due_date: IsoDate;
  /** For a late fee: the bill it is charged on. */
  late_fee_of: BillId | null;
  period_end: IsoDate;
  period_start: IsoDate;
  provider: string;
  /** `open`, `overdue`, `processing` (reserved by a card payment under way), `paid` or `void`. */
  status: BillStatus;
  utility: string;
}

/** The reply's data, kind `bill`. */
export interface BillData {
  amount: Amount;
  bill_id: BillId;
  currency: Currency;
  /**
   * Whole days since the due date for an overdue bill, else 0; counted when the bill is read
   * (a cached copy keeps the 0 it was stored with, see [`BillView::count_days_overdue`]).
   */
  days_overdue: number;
  due_date: IsoDate;
  events: Event2[];
  /** For a late fee: the bill it is charged on. */
  late_fee_of: BillId | null;
  /** As the provider sent them. */
  lines: BillLine[] | null;
  period_end: IsoDate;
  period_start: IsoDate;
  provider: string;
  /** `open`, `overdue`, `processing` (reserved by a card payment under way), `paid` or `void`. */
  status: BillStatus;
  utility: string;
}

/** A bill, as listed in `bills_id`. */
export type BillId = number;

/**
 * A line of a bill. Quantities and unit prices are decimals of up to six places, carried as
 * strings; a line's amount may be negative (a credit).
 */
export interface BillLine {
  amount: LineAmount;
  description: string;
  quantity: Quantity;
  unit_price: Quantity;
}

export type BillStatus = "open" | "overdue" | "processing" | "paid" | "void";

/** An endpoint just made or rotated, with its signing secret: the one time it is shown. */
export interface Created {
  created_at: Instant;
  /** Why it is disabled: by its provider, or after 3 days of failed deliveries. */
  disabled_reason?: string | null;
  enabled: boolean;
  id: Uuid;
  /** Deliveries waiting to be sent (or retried). */
  pending: number;
  /** Until when the secret a rotation replaced still signs beside the new one. */
  previous_secret_until?: Instant | null;
  provider_id: ProviderId;
  /** `whsec_…`: keep it; it is not shown again. */
  secret: string;
  /** The event types it is sent; empty: every type. */
  types: Type[];
  updated_at: Instant;
  url: string;
}

export type Currency = string;

export type Date = string;

/** The reply's data, kind `me_payment_method_delete`: the cards still saved. */
export interface DeletedCardData {
  cards: SavedCard[];
  deleted: string;
}

export interface DeletedData {
  deleted: boolean;
  /** The id payments and the audit trail keep. */
  user_id: UserId;
}

/** The reply's data, kind `webhook_delete`. */
export interface DeletedEndpointData {
  deleted: Uuid;
  /** Deliveries that were still waiting, dropped with it. */
  pending_dropped: number;
}

/** The reply's data, kind `webhook_deliveries`. */
export interface DeliveriesData {
  deliveries: Delivery[];
  endpoint_id: Uuid;
  /** The `before_id` of the next page, when there is one. */
  next_before_id: number | null;
}

export interface Delivery {
  attempts: number;
  created_at: Instant;
  delivered_at: Instant | null;
  event_id: number;
  event_type: Type;
  id: number;
  /** The last attempts, newest first. */
  last_attempts: Attempt[];
  next_attempt_at: Instant | null;
  /** A delivery a replay made. */
  replay: boolean;
  status: Status;
}

/**
 * The reply's data of the document routes, kind `document`: the document as issued, with a
 * presigned link to it.
 */
export interface DocumentData {
  bytes: number;
  created_at: Instant;
  document_id: Uuid;
  expires_at: Instant;
  format: DocumentFormat;
  kind: DocumentKind;
  /** Of the file's bytes, in hex. */
  sha256: string;
  /** A presigned GET of the file. */
  url: string;
}

/** In which form. */
export type DocumentFormat = ("pdf" | "csv") | "xlsx";

/** Which document. */
export type DocumentKind = "receipt" | "bill" | "statement" | "settlement";

/** An endpoint as its provider sees it (never its secret, except once: [`Created`]). */
export interface Endpoint {
  created_at: Instant;
  /** Why it is disabled: by its provider, or after 3 days of failed deliveries. */
  disabled_reason?: string | null;
  enabled: boolean;
  id: Uuid;
  /** Deliveries waiting to be sent (or retried). */
  pending: number;
  /** Until when the secret a rotation replaced still signs beside the new one. */
  previous_secret_until?: Instant | null;
  provider_id: ProviderId;
  /** The event types it is sent; empty: every type. */
  types: Type[];
  updated_at: Instant;
  url: string;
}

/** The reply's data, kind `webhooks_list`. */
export interface EndpointsData {
  endpoints: Endpoint[];
  provider_id: ProviderId;
}

/**
 * One event as every consumer gets it: the body of a webhook, an item of the feed, the
 * `detail` of a bus event.
 */
export interface Event {
  /** The payload, as its type's schema in the catalogue says. */
  data: unknown;
  /**
   * The event's own id, never reused; `webhook-id` is `evt_` and this. The feed orders events
   * by commit, which this may not follow.
   */
  id: number;
  provider_id: ProviderId;
  /** When the change happened. */
  timestamp: Instant;
  type: Type;
  /**
   * The payload's schema version: a field added keeps it, a field changed or removed makes a
   * new one.
   */
  version: number;
}

/** A change of the bill's status, as the audit trail recorded it. */
export interface Event2 {
  at: Instant;
  status: string;
}

/** The reply's data, kind `events`. */
export interface EventsData {
  events: Event[];
  /** Whether more events are there already. */
  has_more: boolean;
  /**
   * Where to go on from: the last event of this page, or the `since_id` asked for when the
   * page is empty.
   */
  next_since_id: number | null;
  provider_id: ProviderId;
}

/** How a payment made outside qbill came. */
export interface External {
  method: ExternalMethod;
  received_on: Date;
  /** The payer's reference: the transfer's, the cheque's number, the cash receipt's. */
  reference: string;
}

/** How money paid outside qbill came. */
export type ExternalMethod = "bank_transfer" | "cash" | "cheque" | "other";

export type FeeKind = "fixed" | "percent";

export interface HistoriesData {
  apartment_id: ApartmentId;
  currency: Currency;
  date_down: IsoDate;
  date_up: IsoDate;
  /** Send it back as `cursor` for the next page; `null` on the last page. */
  next_cursor: string | null;
  /**
   * The refunds that went back outside the window the client holds (by the day they went
   * back), on the first page only.
   */
  refunds: RefundedPayment[];
  settled: SettledBill[];
}

/** The reply's data, kind `bills_ingest`: the kept reply's ([`Kept`]) with its codes derived. */
export interface IngestData {
  bills: Ingested[];
  /** The accounts this request created, with their codes. */
  new_accounts: AccountCode[];
  provider_id: ProviderId;
  /** The accounts whose code was used or voided since they were last named, with their new codes. */
  rotated_codes: AccountCode[];
}

export interface Ingested {
  bill_id: BillId;
  external_id: string;
  status: string;
}

/**
 * What a bill costs once it is overdue: a fixed amount, or a percentage of the bill (rounded
 * half away from zero to the cent), at most `cap` when given.
 */
export interface LateFee {
  cap?: Amount | null;
  kind: FeeKind;
  value: Amount;
}

export type LineAmount = string;

/** The reply's data, kind `apartments_link`. */
export interface LinkData {
  account_number: string;
  apartment: LinkedApartment;
  provider_id: ProviderId;
}

export interface LinkedApartment {
  address: string;
  id: ApartmentId;
}

export interface LiveSession {
  expires_at: Instant;
  /** The session's own id (its refresh token family): it names the session, and opens nothing. */
  id: Uuid;
  refreshed_at: Instant;
  started_at: Instant;
}

export interface LogoutData {
  logged_out: boolean;
}

export interface MeData {
  apartments: Apartment[];
  more_apartments?: boolean;
  notification_preferences: Record<string, NotificationChannels>;
  user: MeUser;
}

export interface MeUser {
  created_at: Instant;
  display_name: string | null;
  email: string | null;
  email_verified: boolean;
  id: UserId;
  /** The verified phone number texts go to (E.164). */
  phone: string | null;
  /** A number waiting for its code (`POST /me/phone/verify`). */
  phone_pending?: string | null;
  role: Role;
  username: string | null;
}

export interface NewUser {
  id: UserId;
  username: string;
}

export interface Notification {
  at: Instant;
  body: string;
  data: unknown;
  event: string;
  id: number;
  subject: string;
}

/** Whether an event is mailed, shown in the inbox and texted (to a verified number only). */
export interface NotificationChannels {
  email: boolean;
  inbox: boolean;
  sms: boolean;
}

export interface NotificationsData {
  /** Pass it as `since_id` for the next page (the same as sent when nothing is new). */
  next_since_id: number;
  notifications: Notification[];
}

export interface PasswordData {
  message: string;
  password_changed: boolean;
}

/** The reply's data, kind `payment`. */
export interface PaymentData {
  apartment_id: ApartmentId;
  bills_id: BillId[];
  /** For Stripe.js, while the payment waits on the household. */
  client_secret?: string | null;
  currency: Currency;
  /**
   * For a payment made elsewhere and recorded by an operator or the provider: how the money
   * came, the payer's reference and the day it was received.
   */
  external?: External | null;
  /** The processor's decline code, for a refused card. */
  failure_code?: string | null;
  /** Why, in a sentence for people. */
  failure_message?: string | null;
  /** Its changes of status, oldest first. */
  history: Step[];
  /** When the money was captured; none until it was. */
  paid_at: Instant | null;
  payment_id: Uuid;
  /** What of it was given back (its succeeded refunds). */
  refunded: Amount;
  /** Its refunds, oldest first, whatever became of them. */
  refunds: RefundLine[];
  /**
   * `succeeded` (the bills are paid), `pending` (waiting for the card: confirm it with
   * `client_secret`), `requires_action` (the card's bank asks the household: `client_secret`),
   * `processing` (the processor is at work; a webhook settles it), `failed` (the card was
   * refused: `failure_code`, `failure_message`; the bills can be paid again) or `canceled`.
   */
  status: PaymentStatus;
  total: Amount;
}

/** The reply's data, kind `me_payment_methods`. */
export interface PaymentMethodsData {
  cards: SavedCard[];
  client_secret?: string | null;
  /** When finishing: the card saved now, and every saved card. */
  saved?: SavedCard | null;
  /** When starting: the SetupIntent to confirm with Stripe.js, and its secret. */
  setup_intent_id?: string | null;
}

export type PaymentStatus = "pending" | "requires_action" | "processing" | "succeeded" | "failed" | "canceled";

/** The reply's data, kind `payments`: the payment and where it stands. */
export interface PaymentsData {
  apartment_id: ApartmentId;
  bills_id: BillId[];
  /** For Stripe.js, while the payment waits on the household. */
  client_secret?: string | null;
  currency: Currency;
  /**
   * For a payment made elsewhere and recorded by an operator or the provider: how the money
   * came, the payer's reference and the day it was received.
   */
  external?: External | null;
  /** The processor's decline code, for a refused card. */
  failure_code?: string | null;
  /** Why, in a sentence for people. */
  failure_message?: string | null;
  /** When the money was captured; none until it was. */
  paid_at: Instant | null;
  payment_id: Uuid;
  /**
   * `succeeded` (the bills are paid), `pending` (waiting for the card: confirm it with
   * `client_secret`), `requires_action` (the card's bank asks the household: `client_secret`),
   * `processing` (the processor is at work; a webhook settles it), `failed` (the card was
   * refused: `failure_code`, `failure_message`; the bills can be paid again) or `canceled`.
   */
  status: PaymentStatus;
  total: Amount;
}

/** The reply's data, kind `policy`. */
export interface PolicyData {
  grace_days: number;
  late_fee: LateFee | null;
  provider_id: ProviderId;
}

/** The reply's data, kind `provider`. */
export interface ProviderData {
  currency: Currency;
  name: string;
  provider_id: ProviderId;
  username: string;
}

/** A provider of utilities, as named in the path of a provider's route. */
export type ProviderId = number;

export type Quantity = string;

/** The reply's data, kind `refund`. */
export interface RefundData {
  amount: Amount;
  apartment_id: ApartmentId;
  /** The bills due again, once the payment was refunded whole. */
  bills_reopened: BillId[];
  created_at: Instant;
  currency: Currency;
  /** Why the processor refused it, for a `failed` refund. */
  failure_reason?: string | null;
  payment_id: Uuid;
  /** What of the payment was given back so far (succeeded refunds). */
  payment_refunded: Amount;
  payment_total: Amount;
  reason: string;
  refund_id: Uuid;
  /** When the money went back; none until it did. */
  refunded_at: Instant | null;
  /**
   * `pending` (the processor is at work), `succeeded` (the money went back), `failed` or
   * `canceled` (it did not; the amount can be refunded again).
   */
  status: RefundStatus;
}

/** A refund as a payment's reply and the history list it. */
export interface RefundLine {
  amount: Amount;
  created_at: Instant;
  currency: Currency;
  reason: string;
  refund_id: Uuid;
  /** When the money went back; none until it did. */
  refunded_at: Instant | null;
  /**
   * `pending` (the processor is at work), `succeeded` (the money went back), `failed` or
   * `canceled` (it did not; the amount can be refunded again).
   */
  status: RefundStatus;
}

export type RefundStatus = "pending" | "succeeded" | "failed" | "canceled";

/** Money of a payment given back. */
export interface RefundedPayment {
  amount: Amount;
  created_at: Instant;
  currency: Currency;
  payment_id: Uuid;
  reason: string;
  refund_id: Uuid;
  /** When the money went back; none until it did. */
  refunded_at: Instant | null;
  /**
   * `pending` (the processor is at work), `succeeded` (the money went back), `failed` or
   * `canceled` (it did not; the amount can be refunded again).
   */
  status: RefundStatus;
  /**
   * Whether this refund made the payment refunded whole, its bills due again (they leave the
   * settled bills from this reply on; a client drops them by `payment_id`).
   */
  whole: boolean;
}

/** The reply's data, kind `webhook_replay`. */
export interface ReplayData {
  /** Whether the endpoint is enabled (a disabled one gets them once enabled). */
  enabled: boolean;
  endpoint_id: Uuid;
  /** Deliveries made. */
  events: number;
  /** The first and the last event sent again. */
  first_event_id: number | null;
  last_event_id: number | null;
  since: Instant;
  /**
   * Whether more events than [`MAX_EVENTS`] were there: replay again from after the last one's
   * time.
   */
  truncated: boolean;
}

export interface ResetData {
  message: string;
}

export interface ResetDoneData {
  message: string;
  password_reset: boolean;
}

/** What a user may do; a token carries it. */
export type Role = "household" | "provider" | "operator";

/** A saved card as the household sees it: which card, never its number. */
export interface SavedCard {
  brand: string;
  exp_month: number;
  exp_year: number;
  last4: string;
  /** What `payments` takes as `payment_method` to pay with it. */
  payment_method_id: string;
}

/** The reply's data, kind `me_payment_methods_list`. */
export interface SavedCardsData {
  cards: SavedCard[];
}

export interface SessionsData {
  more_sessions?: boolean;
  sessions: LiveSession[];
}

/** A bill as clients see it, in `utils` and (with its payment) in `histories`. */
export interface SettledBill {
  amount: Amount;
  bill_id: BillId;
  currency: Currency;
  /**
   * Whole days since the due date for an overdue bill, else 0; counted when the bill is read
   * (a cached copy keeps the 0 it was stored with, see [`BillView::count_days_overdue`]).
   */
  days_overdue: number;
  due_date: IsoDate;
  /** For a late fee: the bill it is charged on. */
  late_fee_of: BillId | null;
  paid_at: Instant;
  payment_id: Uuid;
  period_end: IsoDate;
  period_start: IsoDate;
  provider: string;
  /** `open`, `overdue`, `processing` (reserved by a card payment under way), `paid` or `void`. */
  status: BillStatus;
  utility: string;
}

/** One provider's day in one currency. */
export interface Settlement {
  /** What of gross the provider received itself (payments made elsewhere). */
  collected_elsewhere: Amount;
  currency: Currency;
  day: Date;
  fees: Amount;
  gross: Amount;
  /** gross − refunds − fees (negative on a day of more refunds than payments). */
  net: LineAmount;
  payments: number;
  refunds: Amount;
  refunds_count: number;
}

/** The reply's data, kind `settlements`. */
export interface SettlementsData {
  from: Date;
  /** The first day of the window not closed yet, if any: it and the days after are still open. */
  open_from: Date | null;
  provider_id: ProviderId;
  /** The closed days with activity, oldest first. */
  settlements: Settlement[];
  to: Date;
}

export interface SignupData {
  /** Always `sent`: whether the address was free is not told. */
  email_verification: string;
  user: NewUser;
}

export type Status = "pending" | "sending" | "delivered" | "failed";

/** A change of the payment's status, as the audit trail recorded it. */
export interface Step {
  at: Instant;
  status: PaymentStatus;
  /** Who said so: `request`, `confirm`, `webhook`, `expiry` or `reconcile`. */
  via: string;
}

export interface Totals {
  by_provider: Record<string, string>;
  by_utility: Record<string, string>;
  currency: Currency;
  total: string;
}

/** What happened: one vocabulary for webhooks, the feed and the bus. */
export type Type = "bill.created" | "bill.voided" | "bill.overdue" | "bill.paid" | "late_fee.created" | "payment.succeeded" | "payment.failed" | "refund.succeeded" | "account.linked" | "settlement.closed";

export interface UndoneData {
  email: string;
  email_verified: boolean;
  message: string;
}

export interface User {
  id: UserId;
  provider_id: ProviderId | null;
  role: Role;
  username: string;
}

/** The reply's data, kind `user`. */
export interface UserData {
  id: UserId;
  provider_id: ProviderId | null;
  role: Role;
  username: string;
}

/** A user, as carried in the token's `sub`. */
export type UserId = number;

/** One page of the reply. */
export interface UtilsData {
  apartment_id: ApartmentId;
  bills: Bill[];
  /** How many unpaid bills there are in all. */
  bills_count: number;
  currency: Currency;
  /** Send it back as `cursor` for the next page; `null` on the last page. */
  next_cursor: string | null;
  /** Of every unpaid bill, not only this page's. */
  totals: Totals;
}

export interface VerifiedData {
  email: string;
  email_verified: boolean;
  user_id: UserId;
}

/** The reply's data, kind `bill_void`. */
export interface VoidData {
  bill_id: BillId;
  status: string;
  voided_at: Instant;
}

/** Each reply kind and its data. */
export interface ReplyData {
  apartments_link: LinkData;
  auth: AuthData;
  bill: BillData;
  bill_void: VoidData;
  bills_ingest: IngestData;
  document: DocumentData;
  email_undo: UndoneData;
  events: EventsData;
  histories: HistoriesData;
  logout: LogoutData;
  me: MeData;
  me_delete: DeletedData;
  me_password: PasswordData;
  me_payment_method_delete: DeletedCardData;
  me_payment_methods: PaymentMethodsData;
  me_payment_methods_list: SavedCardsData;
  me_sessions: SessionsData;
  notifications: NotificationsData;
  password_reset: ResetData;
  password_reset_confirm: ResetDoneData;
  payment: PaymentData;
  payments: PaymentsData;
  payments_external: PaymentsData;
  policy: PolicyData;
  provider: ProviderData;
  provider_documents: DocumentData;
  refund: RefundData;
  settlements: SettlementsData;
  signup: SignupData;
  user: UserData;
  utils: UtilsData;
  verify_email: VerifiedData;
  webhook: Endpoint;
  webhook_delete: DeletedEndpointData;
  webhook_deliveries: DeliveriesData;
  webhook_replay: ReplayData;
  webhook_rotate: Created;
  webhooks: Created;
  webhooks_list: EndpointsData;
}
// contract:end

/** Every reply kind (./routes.ts, written from the routes). */
export type { Kind } from "./routes";
import type { Kind } from "./routes";

/** The data of a reply of kind `K`. */
export type DataOfKind<K extends Kind> = ReplyData[K];

export type ErrorCode =
  | "invalid_request"
  | "unauthorized"
  | "forbidden"
  | "not_found"
  | "already_paid"
  | "conflict"
  | "internal";

export type Reply<K extends Kind = Kind> =
  | { request_id: Uuid | null; kind: K; status: "ok"; data: DataOfKind<K> }
  | { request_id: Uuid | null; kind: K | string; status: "error"; error: { code: ErrorCode; message: string } };

/** What a POST answers: the request is on the queue, the reply comes later. */
export interface Accepted {
  accepted: true;
  gateway_request_id: string;
}

/** What a poll of the reply queue answers. */
export interface Replies {
  replies: Reply[];
}
