// Stripe.js, as much of it as the app uses, loaded once from where /config.json says
// (`stripe_js_url`: https://js.stripe.com/v3/ on AWS, localstripe's stand-in locally, which works
// out its server from its own address). The card's number never reaches the app's code or the
// gateway: Stripe.js turns the card element into a token at the processor, and the app sends the
// token's card (`card_…`) as the payment's `payment_method`.
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
  createToken(card: CardElement): Promise<{ token?: { id: string; card?: { id: string } }; error?: StripeError }>;
  confirmCardPayment(clientSecret: string): Promise<{ paymentIntent?: { id: string; status: string }; error?: StripeError }>;
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
