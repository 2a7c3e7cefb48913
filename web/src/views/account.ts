// Logging in, signing up, the mailed links (verify the address, reset the password, undo an
// address change), and the inbox of notifications.
import { explain, type App } from "../app";
import { h } from "../dom";
import { NoReplyError, ReplyError } from "../gateway";
import { formatInstant } from "../money";
import { AFTER_LOGIN } from "../session";
import { errorBox, field, heading, onSubmit } from "./common";

export function loginView(app: App, notice?: string): HTMLElement {
  const username = h("input", { name: "username", autocomplete: "username", required: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const status = h("div", { class: "form-status" });
  const form = h(
    "form",
    { class: "card narrow" },
    field("Username", username),
    field("Password", password),
    h("button", { type: "submit", class: "primary" }, "Log in"),
    status,
  );
  onSubmit(form, status, async () => {
    try {
      await app.session.logIn(username.value.trim(), password.value);
    } catch (error) {
      throw new Error(explain(error, "The login"));
    }
    app.announce(`Logged in as ${app.session.user?.username}.`);
    const next = sessionStorage.getItem(AFTER_LOGIN);
    sessionStorage.removeItem(AFTER_LOGIN);
    app.go(next && next !== "#/login" ? next : "#/");
  });
  return h(
    "section",
    {},
    heading("Log in"),
    notice ? h("p", { class: "notice", role: "status" }, notice) : null,
    form,
    h("p", { class: "links" }, h("a", { href: "#/signup" }, "Open an account"), " · ", h("a", { href: "#/forgot" }, "Forgot your password?")),
  );
}

export function signupView(app: App): HTMLElement {
  const username = h("input", { name: "username", autocomplete: "username", required: true, pattern: "[A-Za-z0-9][A-Za-z0-9._\\-]{1,62}" });
  const email = h("input", { name: "email", type: "email", autocomplete: "email", required: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "new-password", required: true, minlength: 12 });
  const status = h("div", { class: "form-status" });
  const form = h(
    "form",
    { class: "card narrow" },
    field("Username", username, "2 to 63 letters, digits, dots, dashes or underscores, starting with a letter or digit."),
    field("Email address", email, "We send a link to confirm it."),
    field("Password", password, "At least 12 characters; not a common password, and not your name or address."),
    h("button", { type: "submit", class: "primary" }, "Open the account"),
    status,
  );
  onSubmit(form, status, async () => {
    try {
      await app.session.gateway.call("/auth/signup", {}, { username: username.value.trim(), email: email.value.trim(), password: password.value });
    } catch (error) {
      throw new Error(explain(error, "The account"));
    }
    form.replaceWith(
      h("p", { class: "notice", role: "status" }, `Your account is open. We sent a link to ${email.value.trim()}: follow it to confirm the address, then log in.`),
    );
  });
  return h("section", {}, heading("Open an account"), form, h("p", { class: "links" }, h("a", { href: "#/login" }, "Log in instead")));
}

export function forgotView(app: App): HTMLElement {
  const email = h("input", { name: "email", type: "email", autocomplete: "email", required: true });
  const status = h("div", { class: "form-status" });
  const form = h("form", { class: "card narrow" }, field("Email address", email), h("button", { type: "submit", class: "primary" }, "Send me a link"), status);
  onSubmit(form, status, async () => {
    try {
      const data = await app.session.gateway.call("/auth/password-reset", {}, { email: email.value.trim() });
      form.replaceWith(h("p", { class: "notice", role: "status" }, data.message));
    } catch (error) {
      throw new Error(explain(error));
    }
  });
  return h("section", {}, heading("Forgot your password?"), form, h("p", { class: "links" }, h("a", { href: "#/login" }, "Back to log in")));
}

/** The link of the verification mail: `/verify-email?token=…`. */
export function verifyView(app: App, token: string): HTMLElement {
  const status = h("div", { role: "status" }, h("p", {}, "Confirming your address…"));
  app.session.gateway.call("/auth/verify-email", {}, { token }).then(
    (data) => status.replaceChildren(h("p", { class: "notice" }, `${data.email} is confirmed.`), h("a", { href: "#/login", class: "button" }, "Log in")),
    (error: unknown) => status.replaceChildren(errorBox(explain(error, "The link"))),
  );
  return h("section", {}, heading("Confirm your address"), status);
}

/** The link of the reset mail: `/reset-password?token=…`. */
export function resetView(app: App, token: string): HTMLElement {
  const password = h("input", { name: "new-password", type: "password", autocomplete: "new-password", required: true, minlength: 12 });
  const status = h("div", { class: "form-status" });
  const form = h(
    "form",
    { class: "card narrow" },
    field("New password", password, "At least 12 characters. Every open session ends."),
    h("button", { type: "submit", class: "primary" }, "Set the password"),
    status,
  );
  onSubmit(form, status, async () => {
    try {
      const data = await app.session.gateway.call("/auth/password-reset/confirm", {}, { token, new_password: password.value });
      form.replaceWith(h("p", { class: "notice", role: "status" }, data.message), h("a", { href: "#/login", class: "button" }, "Log in"));
    } catch (error) {
      throw new Error(explain(error, "The link"));
    }
  });
  return h("section", {}, heading("Set a new password"), form);
}

/**
 * The link of the security mail an address change sends to the old, verified address:
 * `/undo-email?token=…`. Which address comes back is known only once it has, and putting it back
 * signs every device out, so the page asks first.
 */
export function undoEmailView(app: App, token: string): HTMLElement {
  const status = h("div", { class: "form-status" });
  const form = h(
    "form",
    { class: "card narrow", "aria-labelledby": "undo-question" },
    h(
      "p",
      {},
      "The email address of your qbill account was changed, and this link went to the address it had before. " +
        "If you did not make the change, put that address back: every device signed in to the account is signed out, " +
        "whoever made the change too. If you made it yourself, there is nothing to do.",
    ),
    h("p", { class: "strong", id: "undo-question" }, "Put your previous address back and sign out every device?"),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Put it back and sign out"), h("a", { href: "#/", class: "button" }, "Keep the new address")),
    status,
  );
  onSubmit(form, status, async () => {
    let email: string;
    try {
      ({ email } = await app.session.gateway.call("/auth/email-undo", {}, { token }));
    } catch (error) {
      throw new Error(undoRefusal(error));
    }
    // This tab's session, if it had one, ended with every other.
    if (app.session.user) {
      app.session.end();
      app.redrawNav();
    }
    const done = h("p", { class: "notice", role: "status", tabindex: "-1" }, `${email} is your account's address again, and confirmed. Every device was signed out.`);
    form.replaceWith(
      done,
      h(
        "div",
        { class: "card narrow next" },
        h("h2", {}, "Now set a new password"),
        h("p", {}, `Whoever changed the address may know your password. Choose a new one: the link goes to ${email}.`),
        h("a", { href: "#/forgot", class: "button primary" }, "Reset your password"),
      ),
      h("p", { class: "links" }, h("a", { href: "#/login" }, "Log in")),
    );
    done.focus();
  });
  return h("section", {}, heading("Undo the address change"), form);
}

function undoRefusal(error: unknown): string {
  if (error instanceof ReplyError && error.code === "invalid_request") {
    return `This link no longer works: it was used already, is more than 7 days old, or was cut short. (${error.message})`;
  }
  if (error instanceof ReplyError && error.code === "conflict") return `The address cannot be put back: ${error.message}.`;
  // The engine answers an unknown link only on a reply queue that exists, and this tab's may not.
  if (error instanceof NoReplyError) return "No reply came. If the link was used already or is more than 7 days old, it no longer works; otherwise try again.";
  return explain(error, "The link");
}

export function inboxView(app: App): HTMLElement {
  const list = h("div", { "aria-busy": "true" }, h("p", {}, "Loading your notifications…"));
  const load = async () => {
    const items = [];
    let since = 0;
    for (;;) {
      const page = await app.session.gateway.call("/me/notifications", {}, { since_id: since });
      items.push(...page.notifications);
      if (page.notifications.length < 50) break;
      since = page.next_since_id;
    }
    list.removeAttribute("aria-busy");
    if (items.length === 0) {
      list.replaceChildren(h("p", {}, "No notifications yet."));
      return;
    }
    list.replaceChildren(
      h(
        "ol",
        { class: "inbox", reversed: true },
        items.reverse().map((n) =>
          h("li", { class: "card" }, h("h2", {}, n.subject), h("p", { class: "meta" }, formatInstant(n.at)), h("p", { class: "body" }, n.body)),
        ),
      ),
    );
  };
  load().catch((error: unknown) => {
    list.removeAttribute("aria-busy");
    list.replaceChildren(errorBox(explain(error, "The inbox")));
  });
  return h("section", {}, heading("Inbox"), list);
}
