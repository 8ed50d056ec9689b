/**
 * Value-based scrubbing. pino's `redact` hides known keys; this hides known secret *values*
 * wherever they turn up: in a child's output line, a service log tail, an error message.
 * Values shorter than MIN_LEN are not scrubbed: replacing "1" or "ab" everywhere would make logs
 * unreadable and such values protect nothing.
 */
export const MIN_LEN = 4
export const MASK = '[REDACTED]'

export interface Scrubber {
  add(values: Iterable<string>): void
  scrub(text: string): string
  /** deep copy of a JSON-like value with every string scrubbed */
  scrubDeep<T>(value: T): T
}

export const createScrubber = (): Scrubber => {
  const values = new Set<string>()
  let sorted: string[] = []
  const scrub = (text: string): string => {
    if (sorted.length === 0 || text.length < MIN_LEN) return text
    let out = text
    // longest first, so a value containing another is masked whole
    for (const v of sorted) if (out.includes(v)) out = out.split(v).join(MASK)
    return out
  }
  const scrubDeep = <T>(value: T): T => {
    if (typeof value === 'string') return scrub(value) as T
    if (Array.isArray(value)) return value.map(v => scrubDeep(v)) as T
    if (value !== null && typeof value === 'object' && !(value instanceof Date)) {
      if (value instanceof Error) return scrubDeep({ type: value.name, message: value.message, stack: value.stack }) as T
      const out: Record<string, unknown> = {}
      for (const [k, v] of Object.entries(value)) out[k] = scrubDeep(v)
      return out as T
    }
    return value
  }
  return {
    add(newValues) {
      for (const v of newValues) {
        if (v.length >= MIN_LEN) values.add(v)
        // a multi-line value (a PEM key) can leak one line at a time
        for (const line of v.split(/\r?\n/)) if (line.trim().length >= 8) values.add(line.trim())
      }
      sorted = [...values].sort((a, b) => b.length - a.length)
    },
    scrub,
    scrubDeep,
  }
}
