import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { describe, test } from "node:test";
import {
  JSON_SCHEMA_PATH,
  configJsonSchema,
  renderConfigJsonSchema,
} from "../../src/config/json-schema.js";

describe("the JSON Schema for editors", () => {
  test("the committed schema/uplinkd.schema.json is up to date (run `npm run schema`)", async () => {
    const committed = await readFile(new URL(`../../${JSON_SCHEMA_PATH}`, import.meta.url), "utf8");
    assert.equal(committed, renderConfigJsonSchema());
  });

  test("describes what a user writes: only lan and uplinks are required", () => {
    const schema = configJsonSchema() as {
      required: string[];
      additionalProperties: boolean;
      properties: { uplinks: { items: { required: string[] } } };
    };
    assert.deepEqual(schema.required, ["lan", "uplinks"]);
    assert.equal(schema.additionalProperties, false);
    assert.deepEqual(schema.properties.uplinks.items.required, ["name", "interface"]);
  });

  test("durations accept text with a unit or a number of ms, and show defaults as written", () => {
    const schema = configJsonSchema() as {
      properties: {
        health: { properties: { interval: { default: unknown; anyOf: { type: string }[] } } };
      };
    };
    const interval = schema.properties.health.properties.interval;
    assert.equal(interval.default, "500ms");
    assert.deepEqual(
      interval.anyOf.map((s) => s.type),
      ["number", "string"],
    );
  });
});
