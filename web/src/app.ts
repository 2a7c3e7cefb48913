// What every view gets: the session, navigation, and a way to tell the user what happened.
import type { Session } from "./session";
import { type Config, GatewayError, ReplyError } from "./gateway";

export interface App {
  /** The app's configuration (/config.json). */
  config: Config;
  session: Session;
  /** Goes to a `#/…` route. */
  go(route: string): void;
  /** Says something to screen readers (and shows it in the status line). */
  announce(message: string): void;
  /** Draws the navigation again, after the login changed outside of logging in and out. */
  redrawNav(): void;
}

/** A sentence for people from whatever a call failed with. */
export function explain(error: unknown, what = "That"): string {
  if (error instanceof ReplyError) {
    switch (error.code) {
      case "unauthorized":
        return `${sentence(error.message)}`;
      case "forbidden":
        return `${what} is not yours to see or change. (${error.message})`;
      case "not_found":
        return `${what} was not found. (${error.message})`;
      case "already_paid":
        return `Already paid: nothing was charged. (${error.message})`;
      case "conflict":
        return `Conflict: ${error.message}`;
      case "invalid_request":
        return `Not accepted: ${error.message}`;
      default:
        return `Something went wrong on our side; nothing was changed. (${error.message})`;
    }
  }
  if (error instanceof GatewayError) return error.message;
  return String(error);
}

/** "invalid username or password" → "Invalid username or password." */
function sentence(message: string): string {
  const text = message.charAt(0).toUpperCase() + message.slice(1);
  return /[.!?]$/.test(text) ? text : `${text}.`;
}
