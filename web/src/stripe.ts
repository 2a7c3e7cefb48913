// Stripe.js, as much of it as the app uses, loaded once from where /config.json says
// (`stripe_js_url`: https://js.stripe.com/v3/ on AWS, localstripe's stand-in locally, which works
// out its server from its own address). The card's number never reaches the app's code or the
// gateway: Stripe.js turns the card element into a PaymentMethod at the processor (`pm_…`), or,
// with localstripe's stand-in, which makes none, into a token whose card (`card_…`) the app sends
// as the payment's `payment_method` instead.
import type { Config } from "./gateway";

/** What Stripe.js says went wrong (a card incomplete or refused, the processor unreachable). */
export interface StripeError {
  message?: string;
  code?: string;
  type?: string;
}

/** Stripe Elements' card element. */
export interface CardElement {
  mount(target: HTMLElement): void;
  destroy(): void;
  /** Real Stripe.js has it; localstripe's stand-in does not. */
  focus?(): void;
  /** Real Stripe.js passes an event; localstripe's stand-in passes nothing. */
  on(event: "change", handler: (event?: { complete?: boolean; error?: StripeError }) => void): void;
}

export interface StripeJs {
  elements(): { create(type: "card", options?: Record<string, unknown>): CardElement };
  /** Real Stripe.js makes a PaymentMethod (`pm_…`); localstripe's stand-in answers nothing. */
  createPaymentMethod?(data: { type: "card"; card: CardElement }): Promise<{ paymentMethod?: { id: string }; error?: StripeError } | undefined>;
  createToken(card: CardElement): Promise<{ token?: { id: string; card?: { id: string } }; error?: StripeError }>;
  confirmCardPayment(clientSecret: string): Promise<{ paymentIntent?: { id: string; status: string }; error?: StripeError }>;
  /** Saves the card of the element on the SetupIntent's customer (its bank may ask first). */
  confirmCardSetup(
    clientSecret: string,
    data: { payment_method: { card: CardElement } },
  ): Promise<{ setupIntent?: { id: string; status: string } | null; error?: StripeError | null }>;
}

declare global {
  interface Window {
    Stripe?: (publishableKey: string) => StripeJs;
  }
}

/** Stripe.js could not be had: the card form cannot be shown. */
export class StripeUnavailable extends Error {}

let loading: Promise<StripeJs> | null = null;

/** Stripe.js, with the publishable key: the script is added to the page the first time. */
export function loadStripe(config: Config): Promise<StripeJs> {
  const { stripe_js_url: url, stripe_publishable_key: key } = config;
  if (!url || !key) {
    return Promise.reject(new StripeUnavailable("Paying by card is not set up here: the app's configuration names no card processor."));
  }
  loading ??= new Promise<StripeJs>((resolve, reject) => {
    // A classic script, as Stripe asks (and localstripe reads its own `src`).
    const script = document.createElement("script");
    script.src = url;
    script.addEventListener("load", () => {
      if (window.Stripe) resolve(window.Stripe(key));
      else reject(new StripeUnavailable("The card form could not be started. Reload the page and try again."));
    });
    script.addEventListener("error", () => {
      // Asked again next time (the network may come back).
      loading = null;
      script.remove();
      reject(new StripeUnavailable("The card form could not be loaded. Check your connection and try again."));
    });
    document.head.append(script);
  });
  return loading;
}

/** A sentence for people from a Stripe.js error. */
export function stripeMessage(error: StripeError | undefined, fallback: string): string {
  const message = error?.message?.trim();
  if (!message) return fallback;
  return /[.!?]$/.test(message) ? message : `${message}.`;
}

/** The card as a `payment_method`: a PaymentMethod where Stripe.js makes one, else a token's card. */
export async function cardMethod(stripe: StripeJs, card: CardElement): Promise<{ id?: string; error?: StripeError }> {
  // The stand-in's is a plain function returning nothing, not a promise.
  const method = await Promise.resolve()
    .then(() => stripe.createPaymentMethod?.({ type: "card", card }))
    .catch(() => undefined);
  if (method?.paymentMethod?.id) return { id: method.paymentMethod.id };
  if (method?.error) return { error: method.error };
  const made = await stripe.createToken(card).catch(() => ({ token: undefined, error: undefined }));
  return { id: made.token?.card?.id, error: made.error };
}
