// The POST routes, written by `qbill contract` from the routes (workers/core/src/routes): edit the
// route, not these lines; `qbill contract --check` fails when they drift.
// contract:begin
/** The reply kind of each POST route. */
export const routes = {
  "/auth": "auth",
  "/apartments/{apartment_id}/utils": "utils",
  "/apartments/{apartment_id}/histories": "histories",
  "/apartments/{apartment_id}/payments": "payments",
  "/apartments/{apartment_id}/payments/{payment_id}": "payment",
  "/apartments/{apartment_id}/payments/external": "payments_external",
  "/payments/{payment_id}/refund": "refund",
  "/me/payment-methods": "me_payment_methods",
  "/me/payment-methods/list": "me_payment_methods_list",
  "/me/payment-methods/{payment_method_id}/delete": "me_payment_method_delete",
  "/providers/{provider_id}/settlements": "settlements",
  "/providers/{provider_id}/documents": "provider_documents",
  "/providers/{provider_id}/events": "events",
  "/me/phone/verify": "me",
  "/providers/{provider_id}/webhooks": "webhooks",
  "/providers/{provider_id}/webhooks/list": "webhooks_list",
  "/providers/{provider_id}/webhooks/{webhook_id}": "webhook",
  "/providers/{provider_id}/webhooks/{webhook_id}/delete": "webhook_delete",
  "/providers/{provider_id}/webhooks/{webhook_id}/rotate": "webhook_rotate",
  "/providers/{provider_id}/webhooks/{webhook_id}/deliveries": "webhook_deliveries",
  "/providers/{provider_id}/webhooks/{webhook_id}/replay": "webhook_replay",
  "/apartments/{apartment_id}/bills/{bill_id}": "bill",
  "/apartments/link": "apartments_link",
  "/providers/{provider_id}/bills": "bills_ingest",
  "/providers/{provider_id}/bills/{bill_id}/void": "bill_void",
  "/providers/{provider_id}/policy": "policy",
  "/providers": "provider",
  "/users": "user",
  "/auth/signup": "signup",
  "/auth/verify-email": "verify_email",
  "/auth/password-reset": "password_reset",
  "/auth/password-reset/confirm": "password_reset_confirm",
  "/auth/email-undo": "email_undo",
  "/auth/refresh": "auth",
  "/auth/logout": "logout",
  "/me": "me",
  "/me/profile": "me",
  "/me/password": "me_password",
  "/me/delete": "me_delete",
  "/me/notifications": "notifications",
  "/me/sessions": "me_sessions",
  "/apartments/{apartment_id}/documents": "document",
} as const;

/** The routes that take no token: logging in and the account mails' links. */
export const anonymous: ReadonlySet<string> = new Set([
  "/auth",
  "/auth/signup",
  "/auth/verify-email",
  "/auth/password-reset",
  "/auth/password-reset/confirm",
  "/auth/email-undo",
  "/auth/refresh",
  "/auth/logout",
]);

/** Every reply kind. */
export type Kind =
  | "apartments_link"
  | "auth"
  | "bill"
  | "bill_void"
  | "bills_ingest"
  | "document"
  | "email_undo"
  | "events"
  | "histories"
  | "logout"
  | "me"
  | "me_delete"
  | "me_password"
  | "me_payment_method_delete"
  | "me_payment_methods"
  | "me_payment_methods_list"
  | "me_sessions"
  | "notifications"
  | "password_reset"
  | "password_reset_confirm"
  | "payment"
  | "payments"
  | "payments_external"
  | "policy"
  | "provider"
  | "provider_documents"
  | "refund"
  | "settlements"
  | "signup"
  | "user"
  | "utils"
  | "verify_email"
  | "webhook"
  | "webhook_delete"
  | "webhook_deliveries"
  | "webhook_replay"
  | "webhook_rotate"
  | "webhooks"
  | "webhooks_list"
;
// contract:end
