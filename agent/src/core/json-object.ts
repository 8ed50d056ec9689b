/** A JSON document that must be an object (state, lock and release files): anything else,
 * including unparsable text, is undefined, for the caller to treat as missing or corrupt. */
export const parseJsonObject = (raw: string): Record<string, unknown> | undefined => {
  let v: unknown
  try {
    v = JSON.parse(raw)
  } catch {
    return undefined
  }
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? { ...v } : undefined
}
