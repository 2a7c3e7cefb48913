// The client of the public gateway, and nothing else: a POST puts a request on the queue, the
// reply arrives later on this browser session's own reply queue, which one poller reads for
// every request in flight and hands each reply to the request with its `request_id`.
//
// Nothing is lost: a POST the gateway could not enqueue (502, 429, no network) is sent again
// with backoff; a request whose reply does not come (a reply read but lost on the way, say) is
// sent again with the same `request_id`, which the engine answers without doing the work twice
// (a payment gets the same receipt and is charged once).
import {
  type DataOf,
  type PostPath,
  type Reply,
  type RequestFields,
  fillPath,
  isAnonymous,
} from "./contract";

export interface Config {
  /** The gateway stage's URL, without a trailing slash. */
  gateway_url: string;
  /** How long to wait for a reply before sending the request again (ms). */
  resend_after_ms?: number;
  /** How long one poll may wait on the reply queue (0 to 20 s). */
  poll_wait_seconds?: number;
  /** The card processor's publishable key (Stripe's `pk_…`), for Stripe.js. */
  stripe_publishable_key?: string;
  /** Where Stripe.js comes from: `https://js.stripe.com/v3/` (locally, localstripe's stand-in). */
  stripe_js_url?: string;
}

/** The engine answered with an error reply. */
export class ReplyError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The gateway refused the request before it reached the engine (a 400), or never answered. */
export class GatewayError extends Error {}

/**
 * The request was taken, sent again, and never answered. The engine answers a request that proves
 * nothing (no valid token, an unknown link) only on a reply queue that exists already, so a tab's
 * first request with a used or expired link ends here rather than in an error reply.
 */
export class NoReplyError extends GatewayError {}

export interface Waiting {
  /** Requests sent and not yet answered. */
  pending: number;
  /** When the oldest of them was sent (ms since the epoch), or null. */
  since: number | null;
  /** Some request was sent again, or a poll failed and is being retried. */
  retrying: boolean;
}

interface Pending {
  path: string;
  body: string;
  anonymous: boolean;
  /** The token the request was last sent with. */
  token: string | null;
  sentAt: number;
  resends: number;
  /** POSTs the gateway refused or never answered, sent again. */
  postRetries: number;
  timer: number;
  resolve: (data: unknown) => void;
  reject: (error: Error) => void;
}

const MAX_RESENDS = 3;
const MAX_POST_ATTEMPTS = 5;
/** A POST the gateway has not answered in this long is given up and sent again. */
const POST_TIMEOUT_MS = 10_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class Gateway {
  private readonly pending = new Map<string, Pending>();
  private polling = false;
  /** The last poll failed (429, 502, no network, no answer). */
  private pollFailing = false;
  private listeners: ((w: Waiting) => void)[] = [];
  /** Called when a request that carried `token` is refused `unauthorized`. */
  onUnauthorized: (message: string, token: string) => void = () => {};

  constructor(
    private readonly config: Config,
    /** This browser session's reply queue: a UUID it made. */
    readonly queue: string,
    /** The bearer token for the routes that take one. */
    private readonly token: () => Promise<string | null>,
  ) {}

  onWaiting(listener: (w: Waiting) => void): void {
    this.listeners.push(listener);
  }

  /** Sends a request and resolves with its reply's data, or rejects with a ReplyError. */
  call<P extends PostPath>(
    path: P,
    params: Record<string, string | number>,
    fields: RequestFields<P>,
    requestId: string = crypto.randomUUID(),
  ): Promise<DataOf<P>> {
    const body = JSON.stringify({ queue_name: this.queue, request_id: requestId, ...fields });
    return new Promise<DataOf<P>>((resolve, reject) => {
      const pending: Pending = {
        path: fillPath(path, params),
        body,
        anonymous: isAnonymous(path),
        token: null,
        sentAt: Date.now(),
        resends: 0,
        postRetries: 0,
        timer: 0,
        resolve: resolve as (data: unknown) => void,
        reject,
      };
      this.pending.set(requestId, pending);
      this.notify();
      this.send(requestId, pending).then(() => this.poll(), (error: Error) => this.settle(requestId, error));
    });
  }

  /** Forgets every request in flight (logging out). */
  cancelAll(): void {
    for (const [id] of this.pending) this.settle(id, new GatewayError("cancelled"));
  }

  private async send(requestId: string, pending: Pending): Promise<void> {
    let delay = 500;
    for (let attempt = 1; ; attempt++) {
      if (this.pending.get(requestId) !== pending) return;
      const headers: Record<string, string> = { "Content-Type": "application/json" };
      if (!pending.anonymous) {
        pending.token = await this.token();
        // The gateway refuses a token route without its header (a 400, which LocalStack sends
        // without CORS headers): a request left over from a session that ended is not sent.
        if (!pending.token) throw new GatewayError("Your session is not valid any more: try again in a moment, or log in again.");
        headers.Authorization = `Bearer ${pending.token}`;
      }
      let status = 0;
      let message = "";
      try {
        const response = await fetch(`${this.config.gateway_url}${pending.path}`, {
          method: "POST",
          headers,
          body: pending.body,
          signal: AbortSignal.timeout(POST_TIMEOUT_MS),
        });
        status = response.status;
        if (status === 202) break;
        message = ((await response.json().catch(() => ({}))) as { message?: string }).message ?? "";
      } catch {
        status = 0; // no answer at all, or none in time: offline, or the gateway unreachable
      }
      if (status === 400) throw new GatewayError(`The gateway refused the request: ${message || "invalid request"}.`);
      if (attempt >= MAX_POST_ATTEMPTS) {
        throw new GatewayError(
          status === 0 ? "The gateway cannot be reached. Check your connection and try again." : `The gateway answered ${status}; try again.`,
        );
      }
      pending.postRetries += 1;
      this.notify();
      await sleep(delay);
      delay = Math.min(delay * 2, 8000);
    }
    // The reply may have come, or the request been cancelled, while the POST was under way.
    if (this.pending.get(requestId) === pending) this.armResend(requestId, pending);
  }

  /** No reply in time: the same request, with the same request_id, once more. */
  private armResend(requestId: string, pending: Pending): void {
    window.clearTimeout(pending.timer);
    pending.timer = window.setTimeout(() => {
      if (this.pending.get(requestId) !== pending) return;
      if (pending.resends >= MAX_RESENDS) {
        this.settle(requestId, new NoReplyError("No reply came. Try again in a moment."));
        return;
      }
      pending.resends += 1;
      this.notify();
      this.send(requestId, pending).then(
        () => this.poll(),
        (error: Error) => this.settle(requestId, error),
      );
    }, this.config.resend_after_ms ?? 20000);
  }

  /** One poller for the session: runs while something waits for a reply. */
  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    let emptyDelay = 250;
    let errorDelay = 500;
    const wait = this.config.poll_wait_seconds ?? 10;
    try {
      while (this.pending.size > 0) {
        const started = Date.now();
        let replies: Reply[] | null = null;
        try {
          const response = await fetch(`${this.config.gateway_url}/replies/${this.queue}?wait=${wait}`, {
            signal: AbortSignal.timeout((wait + 10) * 1000),
          });
          if (response.ok) {
            const body = (await response.json()) as { replies?: unknown };
            if (Array.isArray(body.replies)) replies = body.replies as Reply[];
          }
        } catch {
          replies = null;
        }
        if (replies === null) {
          // 429 (throttled), 502, no network or no answer in time: back off and poll again.
          this.setPollFailing(true);
          await sleep(errorDelay);
          errorDelay = Math.min(errorDelay * 2, 8000);
          continue;
        }
        this.setPollFailing(false);
        errorDelay = 500;
        for (const reply of replies) {
          try {
            this.dispatch(reply);
          } catch {
            // A reply this client cannot read is dropped; its request is sent again in time.
          }
        }
        if (replies.length === 0 && Date.now() - started < 1000) {
          // The queue does not exist yet (the engine makes it with its first reply): the poll
          // came back at once, so wait a little before the next.
          await sleep(emptyDelay);
          emptyDelay = Math.min(emptyDelay * 2, 2000);
        } else {
          emptyDelay = 250;
        }
      }
    } finally {
      this.polling = false;
    }
  }

  private dispatch(reply: Reply): void {
    // A reply to no request in flight is a second answer to a request sent again: dropped.
    if (!reply.request_id || !this.pending.has(reply.request_id)) return;
    if (reply.status === "ok") {
      this.settle(reply.request_id, null, reply.data);
      return;
    }
    const { token } = this.pending.get(reply.request_id)!;
    this.settle(reply.request_id, new ReplyError(reply.error.code, reply.error.message));
    if (token && reply.error.code === "unauthorized") this.onUnauthorized(reply.error.message, token);
  }

  private settle(requestId: string, error: Error | null, data?: unknown): void {
    const pending = this.pending.get(requestId);
    if (!pending) return;
    this.pending.delete(requestId);
    window.clearTimeout(pending.timer);
    this.notify();
    if (error) pending.reject(error);
    else pending.resolve(data);
  }

  private setPollFailing(failing: boolean): void {
    if (this.pollFailing === failing) return;
    this.pollFailing = failing;
    this.notify();
  }

  private notify(): void {
    let since: number | null = null;
    let retrying = this.pollFailing && this.pending.size > 0;
    for (const p of this.pending.values()) {
      since = since === null ? p.sentAt : Math.min(since, p.sentAt);
      retrying ||= p.resends > 0 || p.postRetries > 0;
    }
    const state = { pending: this.pending.size, since, retrying };
    for (const listener of this.listeners) listener(state);
  }
}
