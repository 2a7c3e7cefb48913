// Paying by card. The form holds Stripe Elements' card element (Stripe.js, from /config.json);
// the card becomes a PaymentMethod at the processor (`pm_…`; with localstripe, a token's card,
// `card_…`) and goes to the payments route as `payment_method`. What the payment's status says comes next:
// - `succeeded`: the receipt;
// - `failed` (or `canceled`): the refusal in words beside the form; its bills are payable again;
// - `requires_action`: the card's bank asks the household (3-D Secure, `confirmCardPayment`), then
//   the payment's page, which asks the payment route until the processor's webhook settled it;
// - `processing` or `pending`: the payment's page too.
// The payment's page is a route of its own (`#/apartments/{id}/payments/{payment_id}`), so a
// reload, or a lost reply, finds the payment where it stands. A request sent again after no reply
// keeps its `request_id` and its card, and the engine answers it with the same payment.
import { explain, type App } from "../app";
import type { PaymentData, PaymentsData } from "../contract";
import { h } from "../dom";
import { GatewayError, ReplyError } from "../gateway";
import { formatMoney } from "../money";
import { type CardElement, type StripeJs, cardMethod, loadStripe, stripeMessage } from "../stripe";
import { cardLabel, savedCards } from "./cards";
import { errorBox, heading } from "./common";
import { type ReceiptBill, keepReceipt, receiptBill } from "./receipt";

/** A payment under way, kept for this tab: what its receipt shows, and where it was made. */
interface Paying {
  bills: ReceiptBill[];
  /** The route of the page that paid. */
  back: string;
  /** The household passed its bank's check in this tab: the processor's word is on its way. */
  checked?: boolean;
  /** What the bank's check said, when it failed. */
  note?: string;
}

const payingKey = (paymentId: string) => `qbill.paying.${paymentId}`;

function keepPaying(paymentId: string, paying: Paying): void {
  sessionStorage.setItem(payingKey(paymentId), JSON.stringify({ ...paying, bills: paying.bills.map(receiptBill) }));
}

function readPaying(paymentId: string): Paying | null {
  try {
    const raw = sessionStorage.getItem(payingKey(paymentId));
    return raw ? (JSON.parse(raw) as Paying) : null;
  } catch {
    return null;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The card's details could not be made into a token: nothing was sent. */
class CardNotTaken extends Error {}

export interface CardPayment {
  apartmentId: number;
  bills: ReceiptBill[];
  total: string;
  currency: string;
  /** What the form asks ("Pay 2 bills for €80.00? …"). */
  question: string;
  /** The route of the page that pays, to come back to. */
  back: string;
  /** What the bills are called in an error ("A chosen bill", "This bill"). */
  what: string;
  /** Why the card tried last was refused: shown beside the form. */
  refused?: string;
  /** The card was refused: its bills are payable again, and the page shows them afresh. */
  onRefused(message: string): void;
  /** The engine refused the request (a bill paid or reserved meanwhile): the page loads again. */
  reload: { label: string; run(): void };
  onCancel?(): void;
}

/** The card form with its confirm button: pays the bills, then goes where the status says. */
export function cardPanel(app: App, p: CardPayment): HTMLElement {
  const money = (amount: string) => formatMoney(amount, p.currency);
  const confirm = h("button", { type: "button", class: "primary", disabled: true }, `Confirm: pay ${money(p.total)}`);
  const cancel = p.onCancel ? h("button", { type: "button" }, "Cancel") : null;
  const mount = h("div", { class: "card-element", "data-testid": "card-element" });
  const cardState = h("p", { class: "loading" }, "Loading the card form…");
  const status = h("div", {});
  const refusal = p.refused ? h("p", { class: "error", role: "alert", tabindex: "-1", "data-testid": "card-refused" }, p.refused) : null;
  const saved = h("div", { class: "saved-cards" });
  const legend = h("legend", {}, refusal ? "Another card" : "Card");
  const panel = h(
    "div",
    { class: "confirm card", role: "region", "aria-label": "Confirm the payment", tabindex: "-1" },
    h("p", {}, p.question),
    refusal,
    saved,
    h(
      "fieldset",
      { class: "card-fields" },
      legend,
      mount,
      h("p", { class: "hint" }, "The card's number, expiry month and year, security code and postal code. They go straight to the card processor, never to qbill."),
      cardState,
    ),
    h("div", { class: "actions" }, confirm, cancel),
    status,
  );

  let stripe: StripeJs | null = null;
  let card: CardElement | null = null;
  /** The request for the card sent last: sent again as it was after no reply. */
  let attempt: { requestId: string; paymentMethod: string } | null = null;

  const focusCard = () => {
    if (card?.focus) card.focus();
    else mount.querySelector<HTMLInputElement>("input")?.focus();
  };

  // Once the panel is on the page: the refusal to read first, or the form itself.
  queueMicrotask(() => {
    if (panel.isConnected) (refusal ?? panel).focus();
  });
  loadStripe(app.config).then(
    (loaded) => {
      if (!panel.isConnected) return;
      stripe = loaded;
      card = loaded.elements().create("card");
      card.mount(mount);
      cardState.remove();
      confirm.disabled = false;
      if (document.activeElement === panel || document.activeElement === document.body) focusCard();
    },
    (error: unknown) => {
      cardState.replaceWith(errorBox(error instanceof Error ? error.message : String(error)));
    },
  );

  // The household's saved cards first: one tap pays with one (unless it was just refused).
  void savedCards(app).then((cards) => {
    if (!panel.isConnected || cards.length === 0) return;
    legend.textContent = "Or another card";
    saved.replaceChildren(
      h("p", { class: "meta" }, "With a saved card:"),
      ...cards.map((c) => {
        const button = h("button", { type: "button", class: "primary", "data-testid": "pay-saved" }, `Pay ${money(p.total)} with ${cardLabel(c)}`);
        button.addEventListener("click", () => {
          attempt = { requestId: crypto.randomUUID(), paymentMethod: c.payment_method_id };
          void pay();
        });
        return button;
      }),
    );
  });

  cancel?.addEventListener("click", () => p.onCancel?.());
  confirm.addEventListener("click", () => void pay());

  async function pay(): Promise<void> {
    if (!stripe) return;
    confirm.disabled = true;
    for (const button of saved.querySelectorAll("button")) button.disabled = true;
    if (cancel) cancel.disabled = true;
    status.replaceChildren(h("p", { role: "status" }, "Paying…"));
    try {
      if (!attempt) {
        if (!card) return;
        const made = await cardMethod(stripe, card);
        const cardId = made.id;
        if (!cardId) throw new CardNotTaken(stripeMessage(made.error, "Enter the card's number, expiry month and year, security code and postal code."));
        attempt = { requestId: crypto.randomUUID(), paymentMethod: cardId };
      }
      const payment = await app.session.gateway.call(
        "/apartments/{apartment_id}/payments",
        { apartment_id: p.apartmentId },
        { bills_id: p.bills.map((b) => b.bill_id), payment_method: attempt.paymentMethod },
        attempt.requestId,
      );
      await follow(stripe, payment);
    } catch (error: unknown) {
      if (cancel) cancel.disabled = false;
      for (const button of saved.querySelectorAll("button")) button.disabled = false;
      if (error instanceof CardNotTaken) {
        status.replaceChildren(errorBox(error.message));
        confirm.disabled = false;
        return;
      }
      const again = h("button", { type: "button" }, p.reload.label);
      again.addEventListener("click", () => p.reload.run());
      status.replaceChildren(errorBox(explain(error, p.what)), again);
      if (error instanceof GatewayError) {
        // No answer is not a refusal: the same request (same id, same card) may be sent again,
        // and pays once.
        confirm.disabled = false;
        confirm.textContent = `Try again: pay ${money(p.total)}`;
      } else {
        attempt = null;
      }
      again.focus();
    }
  }

  async function follow(stripe: StripeJs, payment: PaymentsData): Promise<void> {
    const route = `#/apartments/${p.apartmentId}/payments/${payment.payment_id}`;
    switch (payment.status) {
      case "succeeded":
        keepReceipt(payment, p.bills);
        app.announce(`Paid ${money(payment.total)}.`);
        app.go(`#/apartments/${p.apartmentId}/receipts/${payment.payment_id}`);
        return;
      case "failed":
      case "canceled":
        attempt = null;
        p.onRefused(payment.failure_message ?? "The card was refused, and nothing was charged. Try another card.");
        return;
      case "requires_action": {
        keepPaying(payment.payment_id, { bills: p.bills, back: p.back });
        if (payment.client_secret) {
          status.replaceChildren(h("p", { role: "status" }, "Your card's bank asks you to confirm this payment…"));
          const checked = await stripe.confirmCardPayment(payment.client_secret).catch(() => ({ paymentIntent: undefined, error: undefined }));
          keepPaying(
            payment.payment_id,
            checked.error || !checked.paymentIntent
              ? { bills: p.bills, back: p.back, note: stripeMessage(checked.error, "Your card's bank did not confirm the payment.") }
              : { bills: p.bills, back: p.back, checked: true },
          );
        }
        app.go(route);
        return;
      }
      default:
        // `processing`, `pending`: the processor's webhook settles it in a moment.
        keepPaying(payment.payment_id, { bills: p.bills, back: p.back });
        app.go(route);
    }
  }

  return panel;
}

/** What a receipt keeps of a payment read back. */
function receiptOf(payment: PaymentData): PaymentsData {
  return {
    apartment_id: payment.apartment_id,
    bills_id: payment.bills_id,
    currency: payment.currency,
    failure_code: payment.failure_code,
    failure_message: payment.failure_message,
    paid_at: payment.paid_at,
    payment_id: payment.payment_id,
    status: payment.status,
    total: payment.total,
  };
}

/**
 * A payment under way (`#/apartments/{id}/payments/{payment_id}`): asks the payment route until
 * it is settled, then shows the receipt, or the refusal. The bank's check is offered again while
 * the payment waits for it.
 */
export function paymentView(app: App, apartmentId: number, paymentId: string): HTMLElement {
  const kept = readPaying(paymentId);
  const back = kept?.back ?? `#/apartments/${apartmentId}`;
  const state = h("div", { "data-testid": "payment-state" });
  const processing = (total: string | null, long: boolean) => [
    h(
      "p",
      { role: "status", class: "notice processing" },
      total ? `Processing the payment of ${total}: ` : "Processing the payment: ",
      "the card's processor confirms it in a moment.",
    ),
    long ? h("p", {}, "This takes longer than usual. You may leave this page: the payment shows in the payment history once it is through.") : null,
  ];
  const section = h(
    "section",
    {},
    heading("Payment"),
    state,
    h("p", { class: "links" }, h("a", { href: back }, "Back to the bills"), " · ", h("a", { href: `#/apartments/${apartmentId}/history` }, "Payment history")),
  );
  let shown = "";
  /** The bank's check was passed: the payment waits for the processor's webhook. */
  let checked = kept?.checked ?? false;
  let confirming = false;
  /** What the bank's check said, when it failed. */
  let note = kept?.note;
  /** Shows where the payment stands; the same again (`key`) is left as it is. */
  const show = (status: string, key: string, ...children: (HTMLElement | null)[]) => {
    if (shown === key) return;
    shown = key;
    state.dataset.status = status;
    state.replaceChildren(...children.filter((c): c is HTMLElement => c !== null));
  };

  const settled = (payment: PaymentData, started: number): boolean => {
    const money = (amount: string) => formatMoney(amount, payment.currency);
    switch (payment.status) {
      case "succeeded":
        keepReceipt(receiptOf(payment), kept?.bills ?? []);
        sessionStorage.removeItem(payingKey(paymentId));
        app.announce(`Paid ${money(payment.total)}.`);
        // The receipt takes this page's place: going back does not wait again.
        location.replace(`#/apartments/${apartmentId}/receipts/${paymentId}`);
        return true;
      case "failed":
      case "canceled":
        sessionStorage.removeItem(payingKey(paymentId));
        show(
          payment.status,
          payment.status,
          h("p", { class: "error", role: "alert", "data-testid": "payment-failure" }, payment.failure_message ?? "The payment did not go through, and nothing was charged."),
          h("p", {}, `The bills (${money(payment.total)}) were not paid, and can be paid again.`),
          h("p", {}, h("a", { href: back, class: "button primary" }, "Pay them again")),
        );
        return true;
      case "requires_action": {
        if (confirming) return false;
        if (checked) {
          const long = Date.now() - started > 60_000;
          show("processing", `processing ${long}`, ...processing(money(payment.total), long));
          return false;
        }
        let button: HTMLButtonElement | null = null;
        if (payment.client_secret) {
          const secret = payment.client_secret;
          button = h("button", { type: "button", class: "primary" }, "Confirm with your bank");
          button.addEventListener("click", () => {
            confirming = true;
            button!.disabled = true;
            loadStripe(app.config)
              .then((stripe) => stripe.confirmCardPayment(secret))
              .then(
                (result) => {
                  checked = !result.error && result.paymentIntent !== undefined;
                  note = checked ? undefined : stripeMessage(result.error, "Your card's bank did not confirm the payment.");
                  keepPaying(paymentId, { bills: kept?.bills ?? [], back, checked, note });
                },
                (error: unknown) => {
                  note = error instanceof Error ? error.message : String(error);
                },
              )
              .finally(() => {
                // The next answer of the payment route shows where it stands now.
                confirming = false;
                shown = "";
              });
          });
        }
        show(
          "requires_action",
          `requires_action ${note ?? ""}`,
          h("p", { role: "status" }, `Your card's bank asks you to confirm this payment of ${money(payment.total)}.`),
          note ? errorBox(note) : null,
          button,
        );
        return false;
      }
      default: {
        const long = Date.now() - started > 60_000;
        show(payment.status, `${payment.status} ${long}`, ...processing(money(payment.total), long));
        return false;
      }
    }
  };

  if (checked) show("processing", "processing-first", ...processing(null, false));
  else show("looking", "looking", h("p", { class: "loading" }, "Looking the payment up…"));

  const watch = async () => {
    // The view is on the page once the route that made it has rendered.
    await Promise.resolve();
    const started = Date.now();
    let delay = 1000;
    while (section.isConnected) {
      try {
        const payment = await app.session.gateway.call("/apartments/{apartment_id}/payments/{payment_id}", { apartment_id: apartmentId, payment_id: paymentId }, {});
        if (!section.isConnected) return;
        if (settled(payment, started)) return;
      } catch (error: unknown) {
        if (!section.isConnected) return;
        if (error instanceof ReplyError) {
          show("error", "error", errorBox(explain(error, "This payment")));
          return;
        }
        // No reply, or the gateway unreachable: asked again in a moment.
      }
      await sleep(delay);
      delay = Math.min(delay + 1000, 5000);
    }
  };
  void watch();
  return section;
}
