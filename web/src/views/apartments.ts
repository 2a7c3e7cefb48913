// The user's apartments, and linking a provider's account to one with the activation code of
// its paper bill.
import { explain, type App } from "../app";
import { h } from "../dom";
import { field, heading, onSubmit } from "./common";

export function apartmentsView(app: App): HTMLElement {
  const apartments = app.session.apartments;
  return h(
    "section",
    {},
    heading("Your apartments"),
    apartments.length === 0
      ? h("p", {}, "No apartment yet. Link a provider's account with the activation code on its paper bill.")
      : h(
          "ul",
          { class: "tiles" },
          apartments.map((a) =>
            h(
              "li",
              {},
              h(
                "a",
                { href: `#/apartments/${a.id}`, class: "tile" },
                h("span", { class: "tile-title" }, a.address),
                h("span", { class: "tile-meta" }, `Apartment ${a.id} · bills and payments`),
              ),
            ),
          ),
        ),
    h("p", {}, h("a", { href: "#/link", class: "button" }, "Link an account")),
  );
}

export function linkView(app: App): HTMLElement {
  const provider = h("input", { name: "provider", type: "number", min: 1, step: 1, required: true, inputmode: "numeric" });
  const account = h("input", { name: "account", required: true, pattern: "[A-Za-z0-9._:\\/\\-]{1,40}", autocomplete: "off" });
  const code = h("input", { name: "code", required: true, pattern: "[A-Za-z0-9 \\-]{1,32}", autocomplete: "off" });
  const apartment = h(
    "select",
    { name: "apartment" },
    h("option", { value: "" }, "A new apartment"),
    app.session.apartments.map((a) => h("option", { value: String(a.id) }, a.address)),
  );
  const status = h("div", { class: "form-status" });
  const form = h(
    "form",
    { class: "card narrow" },
    field("Provider number", provider, "On the paper bill, next to the provider's name."),
    field("Account number", account),
    field("Activation code", code, "Printed on the paper bill."),
    field("Apartment", apartment, "Link the account to an apartment you have, or to a new one."),
    h("button", { type: "submit", class: "primary" }, "Link the account"),
    status,
  );
  onSubmit(form, status, async () => {
    try {
      const data = await app.session.gateway.call(
        "/apartments/link",
        {},
        {
          provider_id: Number(provider.value),
          account_number: account.value.trim(),
          activation_code: code.value.trim(),
          ...(apartment.value ? { apartment_id: Number(apartment.value) } : {}),
        },
      );
      app.session.addApartment(data.apartment);
      app.announce(`Account ${data.account_number} is linked to ${data.apartment.address}.`);
      app.go(`#/apartments/${data.apartment.id}`);
    } catch (error) {
      throw new Error(explain(error, "That account"));
    }
  });
  return h("section", {}, heading("Link an account"), form);
}
