// The replies of the HTTP contract (README, "The HTTP contract"), by reply `kind`.
// The requests' bodies are generated from gateway-config/openapi.yaml (./openapi.ts); replies
// travel on the client's reply queue, which the gateway declares only as a list of objects, so
// their shapes are written here. Amounts are decimal strings with two places, never numbers.

/** A decimal amount as the engine writes it, e.g. "1234.50". */
export type Amount = string;
/** An ISO 4217 code, e.g. "EUR". */
export type Currency = string;
/** `YYYY-MM-DD`. */
export type IsoDate = string;
/** An RFC 3339 instant. */
export type Instant = string;
export type Uuid = string;

export type Role = "household" | "provider" | "operator";

export interface Apartment {
  id: number;
  address: string;
}

export interface AuthData {
  token: string;
  token_type: string;
  expires_at: Instant;
  refresh_token: string;
  refresh_expires_at: Instant;
  user: { id: number; username: string; role: Role; provider_id: number | null };
  apartments: Apartment[];
  more_apartments?: boolean;
}

export type BillStatus = "open" | "overdue" | "paid" | "void";

export interface Bill {
  bill_id: number;
  utility: string;
  provider: string;
  period_start: IsoDate;
  period_end: IsoDate;
  due_date: IsoDate;
  amount: Amount;
  currency: Currency;
  status: BillStatus;
  days_overdue: number;
  late_fee_of: number | null;
}

export interface Totals {
  by_utility: Record<string, Amount>;
  by_provider: Record<string, Amount>;
  total: Amount;
  currency: Currency;
}

export interface UtilsData {
  apartment_id: number;
  currency: Currency;
  bills: Bill[];
  bills_count: number;
  totals: Totals;
  next_cursor: string | null;
}

export interface SettledBill extends Bill {
  paid_at: Instant;
  payment_id: Uuid;
}

export interface HistoriesData {
  apartment_id: number;
  currency: Currency;
  settled: SettledBill[];
  date_down: IsoDate | null;
  date_up: IsoDate | null;
  next_cursor: string | null;
}

export interface PaymentsData {
  payment_id: Uuid;
  apartment_id: number;
  bills_id: number[];
  total: Amount;
  currency: Currency;
  paid_at: Instant;
}

export interface BillData extends Bill {
  lines: { description: string; quantity: string; unit_price: Amount; amount: Amount }[] | null;
  events: { at: Instant; status: string }[];
}

export interface DocumentData {
  document_id: Uuid;
  kind: "receipt" | "bill" | "statement";
  format: "pdf" | "csv";
  url: string;
  expires_at: Instant;
  sha256: string;
  bytes: number;
  created_at: Instant;
}

export interface ApartmentsLinkData {
  apartment: Apartment;
  provider_id: number;
  account_number: string;
}

/** An account's activation code; `null` on a repeat when it is no longer the account's. */
export interface AccountCode {
  account_number: string;
  activation_code: string | null;
  note?: string;
}

export interface BillsIngestData {
  provider_id: number;
  bills: { external_id: string; bill_id: number; status: "created" | "unchanged" }[];
  /** The accounts this request created. */
  new_accounts: AccountCode[];
  /** Accounts whose code was used or voided since they were last named, with their new codes. */
  rotated_codes: AccountCode[];
}

export interface BillVoidData {
  bill_id: number;
  status: "void";
  voided_at: Instant;
}

export interface PolicyData {
  provider_id: number;
  grace_days: number;
  late_fee: { kind: "fixed" | "percent"; value: Amount; cap?: Amount | null } | null;
}

export interface ProviderData {
  provider_id: number;
  name: string;
  currency: Currency;
  username: string;
}

export interface UserData {
  id: number;
  username: string;
  role: Role;
  provider_id: number | null;
}

export interface SignupData {
  user: { id: number; username: string };
  email_verification: "sent";
}

export interface VerifyEmailData {
  user_id: number;
  email: string;
  email_verified: boolean;
}

/** The old address back, verified; every session of the account has ended. */
export interface EmailUndoData {
  email: string;
  email_verified: true;
  message: string;
}

export interface PasswordResetData {
  message: string;
}

export interface PasswordResetConfirmData {
  password_reset: boolean;
  message: string;
}

export interface LogoutData {
  logged_out: boolean;
}

export interface NotificationChannels {
  email: boolean;
  inbox: boolean;
}

export interface MeData {
  user: {
    id: number;
    username: string | null;
    email: string | null;
    email_verified: boolean;
    display_name: string | null;
    created_at: Instant;
    role: Role;
  };
  apartments: Apartment[];
  more_apartments: boolean;
  notification_preferences: Record<string, NotificationChannels>;
}

export interface MePasswordData {
  password_changed: boolean;
  message: string;
}

export interface MeDeleteData {
  deleted: boolean;
  user_id: number;
}

export interface Notification {
  id: number;
  event: string;
  at: Instant;
  subject: string;
  body: string;
  data: unknown;
}

export interface NotificationsData {
  notifications: Notification[];
  next_since_id: number;
}

/** Each reply kind and its data. */
export interface ReplyData {
  auth: AuthData;
  utils: UtilsData;
  histories: HistoriesData;
  payments: PaymentsData;
  bill: BillData;
  document: DocumentData;
  apartments_link: ApartmentsLinkData;
  bills_ingest: BillsIngestData;
  bill_void: BillVoidData;
  policy: PolicyData;
  provider: ProviderData;
  user: UserData;
  signup: SignupData;
  verify_email: VerifyEmailData;
  email_undo: EmailUndoData;
  password_reset: PasswordResetData;
  password_reset_confirm: PasswordResetConfirmData;
  logout: LogoutData;
  me: MeData;
  me_password: MePasswordData;
  me_delete: MeDeleteData;
  notifications: NotificationsData;
}

/** Every reply kind (./routes.ts, written from the routes). */
export type { Kind } from "./routes";
import type { Kind } from "./routes";

/** The data of a reply of kind `K`: typed here for the replies the app reads, unknown otherwise. */
export type DataOfKind<K extends Kind> = K extends keyof ReplyData ? ReplyData[K] : unknown;

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
