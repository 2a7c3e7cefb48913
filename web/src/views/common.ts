import { h } from "../dom";

/** A view's heading, focused when the view opens so keyboard and screen-reader users land on it. */
export function heading(text: string): HTMLHeadingElement {
  document.title = `${text} · qbill`;
  return h("h1", { tabindex: "-1", id: "view-title" }, text);
}

/** An error box that screen readers read out as soon as it shows. */
export function errorBox(message: string): HTMLElement {
  return h("p", { class: "error", role: "alert" }, message);
}

export function field(label: string, input: HTMLInputElement | HTMLSelectElement, hint?: string): HTMLElement {
  const id = input.id || `f-${label.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  input.id = id;
  const hintId = hint ? `${id}-hint` : undefined;
  if (hintId) input.setAttribute("aria-describedby", hintId);
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hint ? h("p", { class: "hint", id: hintId }, hint) : null);
}

/** Runs a form's submit handler with the button disabled and errors shown in `status`. */
export function onSubmit(form: HTMLFormElement, status: HTMLElement, handler: () => Promise<void>): void {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const button = form.querySelector<HTMLButtonElement>("button[type=submit]");
    if (button) button.disabled = true;
    status.replaceChildren();
    handler()
      .catch((error: unknown) => status.replaceChildren(errorBox(error instanceof Error ? error.message : String(error))))
      .finally(() => {
        if (button) button.disabled = false;
      });
  });
}
