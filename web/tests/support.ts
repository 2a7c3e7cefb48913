// What the browser tests do outside the browser: read the mail the engine sent (LocalStack's SES
// keeps it) and act as a provider through the gateway, as its systems would.
import { expect } from "@playwright/test";

const need = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: eval "$(scripts/local-stack env test)" first`);
  return value;
};

interface SentMail {
  Destination: { ToAddresses: string[] };
  Subject: string;
  Body: { text_part: string | null };
}

/** The text of the newest mail to `address` whose subject has `words`, once it is there. */
export async function mailTo(address: string, words: string): Promise<string> {
  let found: SentMail | undefined;
  await expect
    .poll(
      async () => {
        const { messages } = (await (await fetch(`${need("AWS_ENDPOINT_URL")}/_aws/ses`)).json()) as { messages: SentMail[] };
        found = messages.reverse().find((m) => m.Destination.ToAddresses.includes(address) && m.Subject.includes(words));
        return found !== undefined;
      },
      { message: `a mail to ${address} about "${words}"`, timeout: 30_000 },
    )
    .toBe(true);
  return found!.Body.text_part ?? "";
}

/** The newest text LocalStack's SNS was given for `phone`, once there is one. */
export async function textTo(phone: string): Promise<string> {
  let found: string | undefined;
  await expect
    .poll(
      async () => {
        const url = `${need("AWS_ENDPOINT_URL")}/_aws/sns/sms-messages`;
        const all = (await (await fetch(url)).json()) as { sms_messages: Record<string, { Message: string }[]> };
        found = all.sms_messages[phone]?.at(-1)?.Message;
        return found !== undefined;
      },
      { message: `a text to ${phone}`, timeout: 30_000 },
    )
    .toBe(true);
  return found!;
}

/** The link in a mail that leads to `page` of the app. */
export function linkIn(text: string, page: string): string {
  const link = text.match(new RegExp(`https?://\\S+/${page}\\?token=[A-Za-z0-9_-]+`))?.[0];
  if (!link) throw new Error(`no ${page} link in the mail: ${text}`);
  return link;
}

/** A session of the gateway outside the browser: its own reply queue, a token once logged in. */
export class Client {
  readonly queue = crypto.randomUUID();
  private token = "";

  async call(path: string, fields: Record<string, unknown> = {}): Promise<Record<string, any>> {
    const request_id = crypto.randomUUID();
    const response = await fetch(`${need("QBILL_GATEWAY_URL")}${path}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${this.token || "none"}` },
      body: JSON.stringify({ queue_name: this.queue, request_id, ...fields }),
    });
    expect(response.status, `POST ${path}`).toBe(202);
    for (let i = 0; i < 30; i++) {
      const { replies } = (await (await fetch(`${need("QBILL_GATEWAY_URL")}/replies/${this.queue}?wait=5`)).json()) as {
        replies: { request_id: string; status: string; data: Record<string, any>; error?: unknown }[];
      };
      const reply = replies.find((r) => r.request_id === request_id);
      if (reply) {
        expect(reply.status, JSON.stringify(reply.error)).toBe("ok");
        return reply.data;
      }
      if (replies.length === 0) await new Promise((r) => setTimeout(r, 300));
    }
    throw new Error(`no reply to POST ${path}`);
  }

  async logIn(username: string, password: string): Promise<void> {
    this.token = (await this.call("/auth", { username, password })).token as string;
  }
}

/**
 * The screen as a screen reader and a keyboard meet it: axe-core's WCAG 2.1 A and AA rules
 * (labels, names, roles, contrast, landmarks, …) find nothing.
 */
export async function expectAccessible(page: import("@playwright/test").Page): Promise<void> {
  const { default: AxeBuilder } = await import("@axe-core/playwright");
  const results = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]).analyze();
  const found = results.violations.map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  expect(found, "accessibility violations").toEqual([]);
}

/** The processor's test cards (localstripe knows them as Stripe does). */
export const CARDS = {
  good: "4242424242424242",
  declined: "4000000000000341",
  threeDSecure: "4000002500003155",
} as const;

/**
 * Types a card into the card form of `scope` (a payment panel). Locally Stripe.js is localstripe's
 * stand-in, whose card element is five plain inputs named by their placeholders; the year takes two
 * digits.
 */
export async function fillCard(scope: import("@playwright/test").Locator, number: string): Promise<void> {
  const card = scope.getByTestId("card-element");
  await expect(card.getByPlaceholder("number")).toBeVisible();
  await card.getByPlaceholder("number").fill(number);
  await card.getByPlaceholder("exp_month").fill("12");
  await card.getByPlaceholder("exp_year").fill("34");
  await card.getByPlaceholder("cvc").fill("123");
  await card.getByPlaceholder("postal_code").fill("10115");
}
