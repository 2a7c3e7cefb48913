// The household web app: boots from /config.json (the gateway's URL), keeps one reply queue per
// browser session, and routes `#/…` to a view. The mails' links arrive as /verify-email?token=…,
// /reset-password?token=… and /undo-email?token=…, which the host serves with this same page.
import type { App } from "./app";
import { h, replace } from "./dom";
import type { Config, Waiting } from "./gateway";
import { AFTER_LOGIN, Session, claimQueue } from "./session";
import { forgotView, inboxView, loginView, resetView, signupView, undoEmailView, verifyView } from "./views/account";
import { apartmentsView, linkView } from "./views/apartments";
import { billView } from "./views/bill";
import { debtsView } from "./views/debts";
import { historyView } from "./views/history";
import { paymentView } from "./views/pay";
import { profileView } from "./views/profile";
import { receiptView } from "./views/receipt";

async function boot(): Promise<void> {
  const root = document.getElementById("app")!;
  let config: Config;
  try {
    const response = await fetch("/config.json", { cache: "no-store" });
    config = (await response.json()) as Config;
  } catch {
    replace(root, h("p", { class: "error", role: "alert" }, "The app's configuration (/config.json) could not be read."));
    return;
  }
  // The mails link to pages by path (`/apartments/1/bills/1081`, `/profile`); the app's routes
  // are the same paths after `#`.
  if (/^\/(apartments\/\d+\/bills\/\d+|profile)$/.test(location.pathname)) {
    history.replaceState(null, "", `/#${location.pathname}`);
  }
  // The security mails say "reset your password at /reset-password", with no token: that is the
  // page that asks for one.
  if (location.pathname === "/reset-password" && !new URLSearchParams(location.search).has("token")) {
    history.replaceState(null, "", "/#/forgot");
  }
  await claimQueue();
  const session = new Session(config);
  const view = h("main", { id: "main", tabindex: "-1" });
  const live = h("p", { class: "visually-hidden", role: "status", "aria-live": "polite" });
  // The bar and its counter are for the eyes; screen readers hear the waiting once, from `live`.
  const waiting = h("div", { class: "waiting", "aria-hidden": "true", hidden: true });
  // The hash is the app's router: the skip link moves focus itself.
  const skip = h("a", { href: "#main", class: "skip" }, "Skip to content");
  skip.addEventListener("click", (event) => {
    event.preventDefault();
    view.focus();
  });
  const nav = h("nav", { "aria-label": "Main", class: "mainnav" });
  replace(
    root,
    skip,
    h("header", { class: "top" }, h("a", { href: "#/", class: "brand" }, "qbill"), nav),
    waiting,
    view,
    live,
  );

  let notice: string | undefined;
  const app: App = {
    config,
    session,
    go(route) {
      if (location.hash === route) render();
      else location.hash = route;
    },
    announce(message) {
      live.textContent = message;
    },
    redrawNav() {
      renderNav();
    },
  };
  session.onEnded = (message) => {
    notice = message;
    app.go("#/login");
  };
  showWaiting(session, waiting, app.announce);

  function renderNav(): void {
    const user = session.user;
    if (!user) {
      replace(nav);
      return;
    }
    const logout = h("button", { type: "button", class: "link" }, "Log out");
    logout.addEventListener("click", () => {
      session.gateway.cancelAll();
      void session.logOut();
      app.announce("Logged out.");
      app.go("#/login");
    });
    replace(
      nav,
      h("a", { href: "#/" }, "Apartments"),
      h("a", { href: "#/link" }, "Link an account"),
      h("a", { href: "#/inbox" }, "Inbox"),
      h("a", { href: "#/profile", class: "who" }, user.username),
      logout,
    );
  }

  function render(): void {
    renderNav();
    const params = new URLSearchParams(location.search);
    const token = params.get("token");
    let content: HTMLElement;
    if (location.pathname === "/verify-email" && token) {
      content = verifyView(app, token);
    } else if (location.pathname === "/reset-password" && token) {
      content = resetView(app, token);
    } else if (location.pathname === "/undo-email" && token) {
      content = undoEmailView(app, token);
    } else {
      content = route(app, location.hash || "#/", notice);
      notice = undefined;
    }
    replace(view, content);
    (view.querySelector<HTMLElement>("h1") ?? view).focus();
  }

  window.addEventListener("hashchange", () => {
    // A mailed link's page, once left, is left for good.
    if (location.pathname !== "/") history.replaceState(null, "", `/${location.hash}`);
    render();
  });
  render();
}

function route(app: App, hash: string, notice?: string): HTMLElement {
  const path = hash.replace(/^#/, "") || "/";
  switch (path) {
    case "/login":
      return loginView(app, notice);
    case "/signup":
      return signupView(app);
    case "/forgot":
      return forgotView(app);
  }
  if (!app.session.user) {
    // Where to go once logged in (a mail's link, say).
    sessionStorage.setItem(AFTER_LOGIN, hash);
    return loginView(app, notice);
  }
  let m: RegExpMatchArray | null;
  if (path === "/") return apartmentsView(app);
  if (path === "/link") return linkView(app);
  if (path === "/inbox") return inboxView(app);
  if (path === "/profile") return profileView(app);
  if ((m = path.match(/^\/apartments\/(\d+)$/))) return debtsView(app, Number(m[1]));
  if ((m = path.match(/^\/apartments\/(\d+)\/history$/))) return historyView(app, Number(m[1]));
  if ((m = path.match(/^\/apartments\/(\d+)\/bills\/(\d+)$/))) return billView(app, Number(m[1]), Number(m[2]));
  if ((m = path.match(/^\/apartments\/(\d+)\/receipts\/([0-9a-f-]{36})$/))) return receiptView(app, Number(m[1]), m[2]);
  if ((m = path.match(/^\/apartments\/(\d+)\/payments\/([0-9a-f-]{36})$/))) return paymentView(app, Number(m[1]), m[2]);
  return h("section", {}, h("h1", { tabindex: "-1" }, "Not found"), h("p", {}, h("a", { href: "#/" }, "Back to your apartments")));
}

/**
 * The waiting state: how many requests wait for their reply, for how long, and whether sent
 * again. Screen readers are told once when a wait grows long or a request is sent again.
 */
function showWaiting(session: Session, el: HTMLElement, announce: (message: string) => void): void {
  let state: Waiting = { pending: 0, since: null, retrying: false };
  let timer = 0;
  let toldLong = false;
  let toldRetry = false;
  const paint = () => {
    if (state.pending === 0 || state.since === null) {
      el.hidden = true;
      el.textContent = "";
      toldLong = toldRetry = false;
      return;
    }
    const seconds = Math.floor((Date.now() - state.since) / 1000);
    if (seconds >= 5 && !toldLong) {
      toldLong = true;
      announce("Still waiting for the reply…");
    }
    if (state.retrying && !toldRetry) {
      toldRetry = true;
      announce("No reply yet: the request was sent again.");
    }
    // Short waits show only the bar; the words come after a second.
    el.hidden = false;
    el.textContent =
      seconds < 1 ? "" : `Waiting for ${state.pending === 1 ? "the reply" : `${state.pending} replies`}… ${seconds} s${state.retrying ? " (sent again)" : ""}`;
  };
  session.gateway.onWaiting((w) => {
    state = w;
    window.clearInterval(timer);
    if (w.pending > 0) timer = window.setInterval(paint, 500);
    paint();
  });
}

void boot();
