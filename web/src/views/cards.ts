// The household's saved cards: the profile's section lists them (brand, last four digits,
// expiry), adds one (a SetupIntent the engine starts, confirmed by Stripe.js with the card the
// household types, then kept by the engine) and removes one; the card form of a payment offers
// them first, to pay in one tap. A card's number never reaches the app's code or the gateway.
import { explain, type App } from "../app";
import type { DataOf } from "../contract";
import { h } from "../dom";
import { type CardElement, loadStripe, stripeMessage } from "../stripe";
import { errorBox } from "./common";

export type SavedCard = DataOf<"/me/payment-methods/list">["cards"][number];

/** `Visa ending 4242, expires 12/34`. */
export function cardLabel(card: SavedCard): string {
  const brand = card.brand.charAt(0).toUpperCase() + card.brand.slice(1);
  const month = String(card.exp_month).padStart(2, "0");
  return `${brand} ending ${card.last4}, expires ${month}/${String(card.exp_year).slice(-2)}`;
}

/** The household's saved cards, or none where the engine takes no cards. */
export async function savedCards(app: App): Promise<SavedCard[]> {
  if (!app.config.stripe_js_url) return [];
  try {
    return (await app.session.gateway.call("/me/payment-methods/list", {}, {})).cards;
  } catch {
    return [];
  }
}

/** The profile's section: the saved cards, each with its remove button, and adding one. */
export function cardsSection(app: App): HTMLElement {
  const list = h("ul", { class: "saved-cards", "aria-label": "Saved cards", "aria-busy": "true" });
  const status = h("div", { class: "form-status" });
  const add = h("button", { type: "button" }, "Add a card");
  const adding = h("div", {});
  const section = h(
    "section",
    { class: "card", "aria-labelledby": "cards-heading" },
    h("h3", { id: "cards-heading" }, "Cards"),
    h("p", { class: "hint" }, "A saved card pays in one tap. Its number stays with the card processor; qbill keeps only which card it is."),
    list,
    h("div", { class: "actions" }, add),
    adding,
    status,
  );

  const paint = (cards: SavedCard[]) => {
    list.removeAttribute("aria-busy");
    if (cards.length === 0) {
      list.replaceChildren(h("li", { class: "meta" }, "No card saved yet."));
      return;
    }
    list.replaceChildren(
      ...cards.map((card) => {
        const remove = h("button", { type: "button", "aria-label": `Remove ${cardLabel(card)}` }, "Remove");
        remove.addEventListener("click", () => {
          remove.disabled = true;
          app.session.gateway
            .call("/me/payment-methods/{payment_method_id}/delete", { payment_method_id: card.payment_method_id }, {})
            .then(
              (left) => {
                paint(left.cards);
                status.replaceChildren(h("p", { class: "notice", role: "status" }, `Removed: ${cardLabel(card)}.`));
              },
              (error: unknown) => {
                remove.disabled = false;
                status.replaceChildren(errorBox(explain(error, "The card")));
              },
            );
        });
        return h("li", { "data-testid": "saved-card" }, h("span", {}, cardLabel(card)), remove);
      }),
    );
  };

  app.session.gateway.call("/me/payment-methods/list", {}, {}).then(
    (listed) => paint(listed.cards),
    (error: unknown) => {
      list.removeAttribute("aria-busy");
      list.replaceChildren();
      status.replaceChildren(errorBox(explain(error, "Your cards")));
    },
  );

  add.addEventListener("click", () => {
    add.disabled = true;
    const mount = h("div", { class: "card-element", "data-testid": "card-element" });
    const save = h("button", { type: "button", class: "primary", disabled: true }, "Save the card");
    const cancel = h("button", { type: "button" }, "Cancel");
    const fields = h(
      "fieldset",
      { class: "card-fields" },
      h("legend", {}, "New card"),
      mount,
      h("p", { class: "hint" }, "The card's number, expiry month and year, security code and postal code. They go straight to the card processor, never to qbill."),
    );
    adding.replaceChildren(fields, h("div", { class: "actions" }, save, cancel));
    let card: CardElement | null = null;
    const close = () => {
      card?.destroy();
      adding.replaceChildren();
      add.disabled = false;
      add.focus();
    };
    cancel.addEventListener("click", close);
    loadStripe(app.config).then(
      (stripe) => {
        card = stripe.elements().create("card");
        card.mount(mount);
        save.disabled = false;
        save.addEventListener("click", async () => {
          if (!card) return;
          save.disabled = true;
          status.replaceChildren(h("p", { role: "status" }, "Saving the card…"));
          try {
            const started = await app.session.gateway.call("/me/payment-methods", {}, {});
            if (!started.client_secret || !started.setup_intent_id) throw new Error("The card could not be saved. Try again.");
            const confirmed = await stripe.confirmCardSetup(started.client_secret, { payment_method: { card } });
            if (confirmed.error || !confirmed.setupIntent) {
              throw new Error(stripeMessage(confirmed.error ?? undefined, "The card could not be saved. Check it and try again."));
            }
            const kept = await app.session.gateway.call("/me/payment-methods", {}, { setup_intent_id: started.setup_intent_id });
            paint(kept.cards);
            close();
            status.replaceChildren(
              h("p", { class: "notice", role: "status" }, kept.saved ? `Saved: ${cardLabel(kept.saved)}.` : "Saved."),
            );
          } catch (error: unknown) {
            save.disabled = false;
            status.replaceChildren(errorBox(error instanceof Error && !("code" in error) ? error.message : explain(error, "The card")));
          }
        });
      },
      (error: unknown) => {
        adding.replaceChildren(errorBox(error instanceof Error ? error.message : String(error)));
        add.disabled = false;
      },
    );
  });
  return section;
}
