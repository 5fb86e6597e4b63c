/**
 * Writes `schema/uplinkd.schema.json` from the zod schema (`npm run schema`).
 * Run it after every change to `src/config/schema.ts`; a unit test fails
 * while the committed file is out of date.
 */
import { writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { JSON_SCHEMA_PATH, renderConfigJsonSchema } from "../src/config/json-schema.js";

const target = fileURLToPath(new URL(`../${JSON_SCHEMA_PATH}`, import.meta.url));
await writeFile(target, renderConfigJsonSchema());
console.log(`wrote ${JSON_SCHEMA_PATH}`);
