/**
 * Notifications on uplink transitions: email over SMTP, webhooks, hook
 * scripts. The daemon makes one {@link Notifier} from the `notify` section
 * of the config and calls `notify(transition)` from its transition handler;
 * `uplinkd notify-test` calls {@link notifyTest}.
 */
export { Notifier, notifyTest, MAX_BURST, MAX_WAITING } from "./notifier.js";
export type { NotifierOptions, NotifyResult } from "./notifier.js";
export { notifySchema, emailSchema, webhookSchema, hookSchema } from "../config/notify.js";
export type { NotifyConfig, EmailConfig, WebhookConfig, HookConfig } from "../config/notify.js";
export { NotifyError, NotifyTimeoutError } from "./errors.js";
export type { ChannelKind } from "./errors.js";
export type { NotifyUplinkStatus, WebhookPayload, HookEvent } from "./message.js";
