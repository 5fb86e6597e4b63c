/** Notification errors live in the catalogue (src/errors.ts); re-exported for the notify modules. */
export { NotifyError, NotifyTimeoutError, type ChannelKind } from "../errors.js";
