// The account (`/profile`, where the mails send people to choose their notifications): name,
// address, and which events reach them by mail and in the inbox.
import { explain, type App } from "../app";
import type { MeData, RequestFields } from "../contract";
import { h } from "../dom";
import { errorBox, field, heading, onSubmit } from "./common";

const EVENTS: Record<string, string> = {
  "bill.created": "A new bill",
  "bill.due_soon": "A bill due within 3 days",
  "bill.overdue": "A bill overdue",
  "late_fee.created": "A late fee",
  "payment.succeeded": "A payment's receipt",
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
  return h("section", {}, heading("Your account"), body);
}

function renderProfile(app: App, me: MeData): HTMLElement {
  const name = h("input", { name: "display-name", autocomplete: "name", maxlength: 100, value: me.user.display_name ?? "" });
  const email = h("input", { name: "email", type: "email", autocomplete: "email", value: me.user.email ?? "" });
  const boxes: { event: string; channel: "email" | "inbox"; box: HTMLInputElement }[] = [];
  const rows = Object.entries(me.notification_preferences).map(([event, channels]) =>
    h(
      "tr",
      {},
      h("th", { scope: "row" }, EVENTS[event] ?? event),
      (["email", "inbox"] as const).map((channel) => {
        const box = h("input", { type: "checkbox", "aria-label": `${EVENTS[event] ?? event}: ${channel === "email" ? "by mail" : "in the inbox"}` });
        box.checked = channels[channel];
        if (event === "account.security" && channel === "email") box.disabled = true;
        boxes.push({ event, channel, box });
        return h("td", {}, box);
      }),
    ),
  );
  const status = h("div", { class: "form-status" });
  const form = h(
    "form",
    { class: "card" },
    h("p", { class: "meta" }, `Username ${me.user.username ?? ""} · ${me.user.email_verified ? "address confirmed" : "address not confirmed yet"}`),
    field("Name", name),
    field("Email address", email, "A new address is confirmed again by mail."),
    h(
      "table",
      { class: "preferences" },
      h("caption", {}, "Tell me about"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Event"), h("th", { scope: "col" }, "By mail"), h("th", { scope: "col" }, "In the inbox"))),
      h("tbody", {}, rows),
    ),
    h("button", { type: "submit", class: "primary" }, "Save"),
    status,
  );
  onSubmit(form, status, async () => {
    const preferences: Record<string, { email?: boolean; inbox?: boolean }> = {};
    for (const { event, channel, box } of boxes) {
      if (box.checked !== me.notification_preferences[event][channel]) (preferences[event] ??= {})[channel] = box.checked;
    }
    const newName = name.value.trim() === "" ? null : name.value.trim();
    const changes: RequestFields<"/me/profile"> = {
      ...(newName !== me.user.display_name ? { display_name: newName } : {}),
      ...(email.value.trim() !== (me.user.email ?? "") && email.value.trim() !== "" ? { email: email.value.trim() } : {}),
      ...(Object.keys(preferences).length > 0 ? { notification_preferences: preferences } : {}),
    };
    if (Object.keys(changes).length === 0) {
      status.replaceChildren(h("p", { class: "notice", role: "status" }, "Nothing to save."));
      return;
    }
    try {
      me = await app.session.gateway.call("/me/profile", {}, changes);
    } catch (error) {
      throw new Error(explain(error, "The change"));
    }
    status.replaceChildren(h("p", { class: "notice", role: "status" }, "Saved."));
  });
  return form;
}
