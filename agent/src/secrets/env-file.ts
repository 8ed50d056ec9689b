/**
 * The env file format: one `KEY=<JSON string literal>` per line, keys sorted, under a comment
 * header. We do not use dotenv syntax because Node's `--env-file` parser cannot carry every value
 * byte-exact (backslashes stay literal, only `\n` expands inside double quotes); a JSON string
 * literal can carry any string, stays on one line, and is still readable by a person on the box.
 * The file is loaded into the service's `process.env` by `secrets/env-preload.ts`.
 *
 * Pure: no I/O. Errors name keys, files and line numbers, never a value.
 */
import { ConfigError } from '../core/errors.js'

export const ENV_FILE_HEADER = '# bootstrap-agent env file v1 — managed, do not edit'

/** What root reads of an env file at most (it sits in the service user's directory: core/untrusted-files.ts); far above any real one. */
export const ENV_FILE_MAX_BYTES = 16 * 1024 * 1024

const KEY_RE = /^[A-Za-z_][A-Za-z0-9_]*$/
// With the `u` flag a well-formed surrogate pair is one code point, so this only matches halves
// that stand alone: they cannot be encoded as UTF-8 and would be mangled on the way to environ.
const LONE_SURROGATE_RE = /[\uD800-\uDFFF]/u

export const isValidEnvKey = (k: string): boolean => KEY_RE.test(k)

/** Why a value cannot live in a process environment, or undefined when it can. */
const valueProblem = (v: string): string | undefined => {
  // environ entries are C strings: everything after a NUL would be silently cut off
  if (v.includes('\0')) return 'contains a NUL character, which an environment variable cannot hold'
  if (LONE_SURROGATE_RE.test(v)) return 'contains a lone UTF-16 surrogate, which is not valid UTF-8'
  return undefined
}

const keyError = (subject: string) =>
  new ConfigError(
    `${subject} is not a valid environment variable name (expected ${KEY_RE.source})`,
    'rename the secret key to letters, digits and underscores, not starting with a digit',
    'SECRET_KEY_INVALID',
  )

const valueError = (where: string, key: string, problem: string) =>
  new ConfigError(
    `${where}: the value of ${key} ${problem}`,
    `fix the value of ${key} at its source (Secrets Manager / SSM)`,
    'SECRET_VALUE_INVALID',
  )

/** Validates every key and value, then renders the file text (sorted, so output is stable). */
export const serializeEnv = (map: Readonly<Record<string, string>>): string => {
  // object keys are unique, so the comparator never needs to answer "equal"
  const entries = Object.entries(map).sort(([a], [b]) => (a < b ? -1 : 1))
  const lines = [ENV_FILE_HEADER]
  for (const [key, value] of entries) {
    // keys are names, not secrets: quoting them (as JSON, so odd characters stay visible) is safe
    if (!isValidEnvKey(key)) throw keyError(`secret key ${JSON.stringify(key)}`)
    const problem = valueProblem(value)
    if (problem !== undefined) throw valueError('secret', key, problem)
    lines.push(`${key}=${JSON.stringify(value)}`)
  }
  return lines.join('\n') + '\n'
}

const formatError = (where: string, rule: string) =>
  new ConfigError(
    `${where}: ${rule}`,
    'let the agent rewrite the env file (run `bootstrap-agent run`); do not edit it by hand',
    'ENV_FILE_INVALID',
  )

/**
 * Parses env file text. `source` (usually the path) is only used in error messages.
 * Only `\n` ends a line: JSON escapes every CR inside a value, so a stray `\r` before the
 * newline (a file saved with CRLF) is just whitespace that JSON.parse tolerates.
 */
export const parseEnv = (text: string, source: string): Record<string, string> => {
  const entries: [string, string][] = []
  const seen = new Set<string>()
  for (const [i, line] of text.split('\n').entries()) {
    if (line.trim() === '' || line.startsWith('#')) continue
    const where = `${source}:${i + 1}`
    const eq = line.indexOf('=')
    // Without an `=` the whole line may be a stray piece of a secret: echo none of it.
    if (eq < 0) throw formatError(where, 'expected KEY=<JSON string>, found no "="')
    const key = line.slice(0, eq)
    if (!isValidEnvKey(key)) throw keyError(`${where}: the key`)
    if (seen.has(key)) throw formatError(where, `${key} is set twice`)
    let value: unknown
    try {
      value = JSON.parse(line.slice(eq + 1))
    } catch {
      // JSON.parse's own message quotes the input (the secret), so it is dropped on purpose.
      value = undefined
    }
    if (typeof value !== 'string') {
      throw formatError(where, `the value of ${key} is not a JSON string literal`)
    }
    const problem = valueProblem(value)
    if (problem !== undefined) throw valueError(where, key, problem)
    seen.add(key)
    entries.push([key, value])
  }
  // fromEntries defines own properties, so a key such as `__proto__` is kept, not swallowed.
  return Object.fromEntries(entries)
}
