// The account (`/profile`, where the mails send people to choose their notifications): name,
// address (a new one takes the current password), phone (verified with a texted code), and which
// events reach them by mail, in the inbox and by text.
import { explain, type App } from "../app";
import type { MeData, RequestFields } from "../contract";
import { h } from "../dom";
import { ReplyError } from "../gateway";
import { cardsSection } from "./cards";
import { errorBox, field, heading, onSubmit } from "./common";

const EVENTS: Record<string, string> = {
  "bill.created": "A new bill",
  "bill.due_soon": "A bill due within 3 days",
  "bill.overdue": "A bill overdue",
  "late_fee.created": "A late fee",
  "payment.succeeded": "A payment's receipt",
  "refund.succeeded": "A refund",
  "account.security": "Changes to the account (always by mail)",
};

export function profileView(app: App): HTMLElement {
  const body = h("div", { "aria-busy": "true" }, h("p", { class: "loading" }, "Loading your account…"));
  app.session.gateway.call("/me", {}, {}).then(
    (me) => {
      body.removeAttribute("aria-busy");
      body.replaceChildren(renderProfile(app, me));
    },
    (error: unknown) => {
      body.removeAttribute("aria-busy");
      body.replaceChildren(errorBox(explain(error, "The account")));
    },
  );
  return h("section", {}, heading("Your account"), body, app.config.stripe_js_url ? cardsSection(app) : null);
}

type Channel = "email" | "inbox" | "sms";
const CHANNELS: Record<Channel, string> = { email: "by mail", inbox: "in the inbox", sms: "by text" };

function renderProfile(app: App, me: MeData): HTMLElement {
  const profile = h("div", {});
  const paint = (current: MeData, said?: string) => profile.replaceChildren(profileForm(app, current, paint, said), phoneCard(app, current, paint) ?? "");
  paint(me);
  return profile;
}

/** The number being verified: the code texted to it, asked for here. */
function phoneCard(app: App, me: MeData, paint: (me: MeData, said?: string) => void): HTMLElement | null {
  const pending = me.user.phone_pending;
  if (!pending) return null;
  const code = h("input", { name: "phone-code", inputmode: "numeric", autocomplete: "one-time-code", pattern: "[0-9]{6}", maxlength: 6, required: true });
  const status = h("div", { class: "form-status" });
  const form = h(
    "form",
    { class: "card", "aria-label": "Verify your phone" },
    h("p", {}, `We texted a six-digit code to ${pending}. It works for 10 minutes.`),
    field("Code", code),
    h("button", { type: "submit", class: "primary" }, "Verify"),
    status,
  );
  onSubmit(form, status, async () => {
    try {
      const verified = await app.session.gateway.call("/me/phone/verify", {}, { code: code.value.trim() });
      paint(verified, `Your phone ${verified.user.phone ?? ""} is verified: choose below what reaches you by text.`);
    } catch (error) {
      code.value = "";
      throw new Error(explain(error, "The code"));
    }
  });
  return form;
}

function profileForm(app: App, me: MeData, paint: (me: MeData, said?: string) => void, said?: string): HTMLElement {
  const name = h("input", { name: "display-name", autocomplete: "name", maxlength: 100, value: me.user.display_name ?? "" });
  const email = h("input", { name: "email", type: "email", autocomplete: "email", value: me.user.email ?? "" });
  // Asked for only when the address changes: a stolen session alone cannot move the account to
  // another mailbox.
  const password = h("input", { name: "current-password", type: "password", autocomplete: "current-password" });
  const passwordField = field("Current password", password, "Changing the address takes your password.");
  const about = h("p", { class: "meta" });
  const paintAbout = () =>
    (about.textContent = `Username ${me.user.username ?? ""} · ${me.user.email_verified ? "address confirmed" : "address not confirmed yet"}`);
  paintAbout();
  /** The address typed, as the engine stores it, or null if it is no change. */
  const newEmail = (): string | null => {
    const typed = email.value.trim().toLowerCase();
    return typed !== "" && typed !== (me.user.email ?? "") ? typed : null;
  };
  const askPassword = () => {
    const asking = newEmail() !== null;
    passwordField.hidden = !asking;
    password.required = asking;
    if (!asking) password.value = "";
  };
  email.addEventListener("input", askPassword);
  askPassword();
  // The number verified, or the one waiting for its code (the card below asks for it).
  const shown = me.user.phone ?? me.user.phone_pending ?? "";
  const phone = h("input", { name: "phone", type: "tel", autocomplete: "tel", maxlength: 24, placeholder: "+44 7700 900123", value: shown });
  /** The number typed, null to remove it, or undefined if it is no change. */
  const newPhone = (): string | null | undefined => {
    const typed = phone.value.trim();
    if (typed === shown) return undefined;
    return typed === "" ? null : typed;
  };
  const boxes: { event: string; channel: Channel; box: HTMLInputElement }[] = [];
  const rows = Object.entries(me.notification_preferences).map(([event, channels]) =>
    h(
      "tr",
      {},
      h("th", { scope: "row" }, EVENTS[event] ?? event),
      (["email", "inbox", "sms"] as const).map((channel) => {
        const box = h("input", { type: "checkbox", "aria-label": `${EVENTS[event] ?? event}: ${CHANNELS[channel]}` });
        box.checked = channels[channel];
        if (event === "account.security" && channel === "email") box.disabled = true;
        // Texts go to a verified number only.
        if (channel === "sms" && !me.user.phone) box.disabled = true;
        boxes.push({ event, channel, box });
        return h("td", {}, box);
      }),
    ),
  );
  const status = h("div", { class: "form-status" });
  const form = h(
    "form",
    { class: "card" },
    about,
    field("Name", name),
    field("Email address", email, "A new address is confirmed again by mail, and the old one is told."),
    passwordField,
    field(
      "Phone",
      phone,
      me.user.phone_pending
        ? "Waiting for the code texted to it (below). Texts go only to a verified number."
        : "For texts, in international form. A new number gets a code by text to verify it; empty removes it.",
    ),
    h(
      "table",
      { class: "preferences" },
      h("caption", {}, "Tell me about"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Event"), h("th", { scope: "col" }, "By mail"), h("th", { scope: "col" }, "In the inbox"), h("th", { scope: "col" }, "By text"))),
      h("tbody", {}, rows),
    ),
    h("button", { type: "submit", class: "primary" }, "Save"),
    status,
  );
  onSubmit(form, status, async () => {
    const preferences: Record<string, { email?: boolean; inbox?: boolean; sms?: boolean }> = {};
    for (const { event, channel, box } of boxes) {
      if (box.checked !== me.notification_preferences[event][channel]) (preferences[event] ??= {})[channel] = box.checked;
    }
    const newName = name.value.trim() === "" ? null : name.value.trim();
    const address = newEmail();
    const number = newPhone();
    const changes: RequestFields<"/me/profile"> = {
      ...(newName !== me.user.display_name ? { display_name: newName } : {}),
      ...(number !== undefined ? { phone: number } : {}),
      ...(address !== null ? { email: address, password: password.value } : {}),
      ...(Object.keys(preferences).length > 0 ? { notification_preferences: preferences } : {}),
    };
    if (Object.keys(changes).length === 0) {
      status.replaceChildren(h("p", { class: "notice", role: "status" }, "Nothing to save."));
      return;
    }
    const before = me.user;
    try {
      me = await app.session.gateway.call("/me/profile", {}, changes);
    } catch (error) {
      if (address !== null && error instanceof ReplyError && error.code === "unauthorized") {
        // The wrong password, or too many wrong ones (the server says for how long).
        password.value = "";
        password.focus();
        throw new Error(`Nothing was changed: ${explain(error).replace(/^./, (c) => c.toLowerCase())}`);
      }
      throw new Error(explain(error, "The change"));
    }
    paintAbout();
    email.value = me.user.email ?? "";
    askPassword();
    const said: string[] = ["Saved."];
    if (address !== null) {
      said.push(`We sent a link to ${address} to confirm it.`);
      if (before.email && before.email_verified) said.push(`${before.email} was told of the change, with a link that puts it back within 7 days.`);
    }
    if (number !== undefined) {
      // The phone card (a code to give) and the texts' boxes follow the number.
      if (number === null) said.push("Your phone was removed: nothing more goes to it by text.");
      paint(me, said.join(" "));
      return;
    }
    status.replaceChildren(h("p", { class: "notice", role: "status" }, said.join(" ")));
  });
  if (said) status.replaceChildren(h("p", { class: "notice", role: "status" }, said));
  return form;
}
