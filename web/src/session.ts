// The browser session: its reply queue (a UUID made once per tab and kept for the tab's life,
// since the token is bound to it) and, once logged in, the tokens and the user's apartments.
// sessionStorage: a reload keeps the session, closing the tab ends it.
import type { Apartment, AuthData } from "./contract";
import { type Config, Gateway, ReplyError } from "./gateway";
import { forgetHistories } from "./history";

const QUEUE_KEY = "qbill.queue";
/** The route to open once logged in (sessionStorage). */
export const AFTER_LOGIN = "qbill.after-login";
const SESSION_KEY = "qbill.session";
/** Refresh the access token this long before it expires. */
const REFRESH_MARGIN_MS = 60_000;

export interface Login {
  token: string;
  expires_at: string;
  refresh_token: string;
  user: AuthData["user"];
  apartments: Apartment[];
}

export class Session {
  readonly gateway: Gateway;
  private login: Login | null;
  private refreshing: Promise<string | null> | null = null;
  /** Called when the session ends on its own (a refused or expired refresh). */
  onEnded: (message: string) => void = () => {};

  /** The session of this tab; `claimQueue` first, so that no other tab shares its queue. */
  constructor(config: Config) {
    let queue = sessionStorage.getItem(QUEUE_KEY);
    if (!queue) {
      queue = crypto.randomUUID();
      sessionStorage.setItem(QUEUE_KEY, queue);
    }
    answerClaims(queue);
    const saved = sessionStorage.getItem(SESSION_KEY);
    this.login = saved ? (JSON.parse(saved) as Login) : null;
    this.gateway = new Gateway(config, queue, () => this.token());
    // A token refused: expired early (this clock is behind), or the session ended elsewhere (a
    // password changed or reset, the account deleted). One refresh tells which. A refusal of a
    // token this tab no longer uses (a reply from before the last refresh or login) says nothing.
    this.gateway.onUnauthorized = (_message, token) => {
      if (this.login?.token === token) void this.refresh();
    };
  }

  get user(): Login["user"] | null {
    return this.login?.user ?? null;
  }

  get apartments(): Apartment[] {
    return this.login?.apartments ?? [];
  }

  addApartment(apartment: Apartment): void {
    if (!this.login) return;
    if (!this.login.apartments.some((a) => a.id === apartment.id)) {
      this.login.apartments = [...this.login.apartments, apartment].sort((a, b) => a.id - b.id);
      this.save();
    }
  }

  async logIn(username: string, password: string): Promise<void> {
    const data = await this.gateway.call("/auth", {}, { username, password });
    this.keep(data);
  }

  async logOut(): Promise<void> {
    const refresh = this.login?.refresh_token;
    // Logging out leaves nothing of the account in this browser (a shared computer).
    if (this.login) forgetHistories(this.login.user.id);
    this.end();
    if (refresh) await this.gateway.call("/auth/logout", {}, { refresh_token: refresh }).catch(() => undefined);
  }

  /** Forgets the login (the queue stays: it is this tab's). */
  end(): void {
    this.login = null;
    sessionStorage.removeItem(SESSION_KEY);
  }

  private keep(data: AuthData): void {
    this.login = {
      token: data.token,
      expires_at: data.expires_at,
      refresh_token: data.refresh_token,
      user: data.user,
      apartments: data.apartments,
    };
    this.save();
  }

  private save(): void {
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(this.login));
  }

  /** The access token, refreshed first when it is about to expire. */
  private async token(): Promise<string | null> {
    const login = this.login;
    if (!login) return null;
    if (Date.parse(login.expires_at) - Date.now() > REFRESH_MARGIN_MS) return login.token;
    return this.refresh();
  }

  /**
   * A new token pair, one refresh at a time. Only the engine's refusal ends the session; a refresh
   * that got no answer (offline, say) keeps the token while it is valid, and is tried again with
   * the next request.
   */
  private refresh(): Promise<string | null> {
    const login = this.login;
    if (!login) return Promise.resolve(null);
    this.refreshing ??= this.gateway
      .call("/auth/refresh", {}, { refresh_token: login.refresh_token })
      .then(
        (data) => {
          if (this.login !== login) return null; // logged out meanwhile
          this.keep(data);
          return data.token;
        },
        (error: unknown) => {
          if (this.login !== login) return null;
          if (error instanceof ReplyError) {
            this.end();
            this.onEnded(`Your session has ended (${error.message}). Please log in again.`);
            return null;
          }
          return Date.parse(login.expires_at) > Date.now() ? login.token : null;
        },
      )
      .finally(() => {
        this.refreshing = null;
      });
    return this.refreshing;
  }
}

const CHANNEL = "qbill.queues";

/**
 * A tab's reply queue is its own: a duplicated tab starts with a copy of sessionStorage, and two
 * tabs polling one queue would take each other's replies (and spend each other's refresh token).
 * Before the session starts, a tab asks the others whether its queue is taken; if it is, it starts
 * afresh with a queue of its own and no login.
 */
export async function claimQueue(): Promise<void> {
  const queue = sessionStorage.getItem(QUEUE_KEY);
  if (!queue || typeof BroadcastChannel === "undefined") return;
  const channel = new BroadcastChannel(CHANNEL);
  const taken = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 150);
    channel.onmessage = (event: MessageEvent<{ taken?: string }>) => {
      if (event.data.taken === queue) {
        clearTimeout(timer);
        resolve(true);
      }
    };
    channel.postMessage({ asking: queue });
  });
  channel.close();
  if (taken) {
    sessionStorage.removeItem(QUEUE_KEY);
    sessionStorage.removeItem(SESSION_KEY);
  }
}

/** Tells a tab that asks for this tab's queue that it is taken. */
function answerClaims(queue: string): void {
  if (typeof BroadcastChannel === "undefined") return;
  const channel = new BroadcastChannel(CHANNEL);
  channel.onmessage = (event: MessageEvent<{ asking?: string }>) => {
    if (event.data.asking === queue) channel.postMessage({ taken: queue });
  };
}
