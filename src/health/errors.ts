/** Health errors live in the catalogue (src/errors.ts); re-exported for the health modules. */
export { HealthError } from "../errors.js";
