/**
 * `{ [key]: value }` when `value` is defined, else `{}`: spread it into an
 * object to set an optional property only when there is a value (no
 * `key: undefined` in status documents, configs or logs).
 */
export function optional<K extends string, V>(key: K, value: V | undefined): Partial<Record<K, V>> {
  return value === undefined ? {} : ({ [key]: value } as Record<K, V>);
}
