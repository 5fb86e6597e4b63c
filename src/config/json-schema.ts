/**
 * The JSON Schema of the config file, for editors (yaml-language-server) and
 * other tools. Generated from the zod schema so the two cannot disagree;
 * `scripts/gen-schema.ts` writes it to `schema/uplinkd.schema.json`.
 */
import { z } from "zod";
import { configSchema } from "./schema.js";

/** Where the generated schema is committed, relative to the repository root. */
export const JSON_SCHEMA_PATH = "schema/uplinkd.schema.json";

/**
 * The JSON Schema (draft 2020-12) of what a user may write: the input side
 * of `configSchema`, so keys with defaults are optional and durations accept
 * strings (`200ms`) or numbers (ms).
 */
export function configJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(configSchema, { io: "input", target: "draft-2020-12" });
}

/** `configJsonSchema()` as the committed file holds it: 2-space JSON and a final newline. */
export function renderConfigJsonSchema(): string {
  return `${JSON.stringify(configJsonSchema(), null, 2)}\n`;
}
