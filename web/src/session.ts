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

  constructor(config: Config) {
    let queue = sessionStorage.getItem(QUEUE_KEY);
    if (!queue) {
      queue = crypto.randomUUID();
      sessionStorage.setItem(QUEUE_KEY, queue);
    }
    const saved = sessionStorage.getItem(SESSION_KEY);
    this.login = saved ? (JSON.parse(saved) as Login) : null;
    this.gateway = new Gateway(config, queue, () => this.token());
    // A token refused (a password changed or reset elsewhere, the account deleted): log in again.
    this.gateway.onUnauthorized = (message) => {
      if (!this.login) return;
      this.end();
      this.onEnded(`Your session has ended (${message}). Please log in again.`);
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
    this.refreshing ??= this.gateway
      .call("/auth/refresh", {}, { refresh_token: login.refresh_token })
      .then(
        (data) => {
          this.keep(data);
          return data.token;
        },
        (error: unknown) => {
          this.end();
          this.onEnded(error instanceof ReplyError ? "Your session has ended. Please log in again." : String(error));
          return null;
        },
      )
      .finally(() => {
        this.refreshing = null;
      });
    return this.refreshing;
  }
}
