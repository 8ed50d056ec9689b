/**
 * The SecretsSource seam and the pure merge of what it returns into one env map.
 * Backends (the local file now, Secrets Manager + Parameter Store on AWS) only fetch; the rules
 * (JSON-object secrets, parameter names -> keys, validation, precedence) live here once.
 *
 * Precedence, later wins: secret ids in their configured order, then parameter paths in theirs.
 * Each override is reported (key and both source names, never values) so it is visible in the log.
 */
import { ConfigError } from '../core/errors.js'
import { isValidEnvKey } from './env-file.js'
import { quote } from '../config/names.js'

export type SecretPayload =
  | { kind: 'string'; text: string }
  | { kind: 'binary' }
  | { kind: 'missing' }

export interface Parameter {
  /** full parameter name, e.g. /stage/auth-service/db/password */
  name: string
  value: string
}

export interface SecretsSource {
  readonly description: string
  /** payloads by id, in the order asked; never throws for a missing id (kind 'missing') */
  getSecrets(ids: readonly string[]): Promise<Map<string, SecretPayload>>
  /** every parameter under `path`, recursively, decrypted */
  getParametersByPath(path: string): Promise<Parameter[]>
  /** one parameter's value (the agent configuration), undefined when it does not exist */
  getParameter(name: string): Promise<string | undefined>
  /** dry run: full names of the parameters under `path`, recursively; reads no value */
  listParameterNames?(path: string): Promise<string[]>
  /** dry run: whether each secret exists (metadata only; reads no value) */
  describeSecrets?(ids: readonly string[]): Promise<Map<string, boolean>>
}

export interface MergedSecrets {
  values: Record<string, string>
  /** key -> source it came from (secret id or parameter name) */
  origin: Record<string, string>
  overrides: { key: string; from: string; by: string }[]
}

const fail = (msg: string, remedy: string, code: string): never => {
  throw new ConfigError(msg, remedy, code)
}

/** A secret's text -> key/value pairs. The value is never quoted in an error. */
export const secretToPairs = (id: string, payload: SecretPayload): [string, string][] => {
  if (payload.kind === 'missing') return []
  if (payload.kind === 'binary') {
    return fail(`secret ${quote(id)} is binary (SecretBinary); expected a JSON object of string values in SecretString`, `store ${id} as a JSON object such as {"KEY":"value"}`, 'SECRET_NOT_OBJECT')
  }
  let data: unknown
  try {
    data = JSON.parse(payload.text)
  } catch {
    return fail(`secret ${quote(id)} is not JSON; expected a JSON object of string values`, `store ${id} as a JSON object such as {"KEY":"value"}`, 'SECRET_NOT_OBJECT')
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    return fail(`secret ${quote(id)} is JSON ${Array.isArray(data) ? 'array' : data === null ? 'null' : typeof data}; expected a JSON object of string values`, `store ${id} as a JSON object such as {"KEY":"value"}`, 'SECRET_NOT_OBJECT')
  }
  const pairs: [string, string][] = []
  for (const [k, v] of Object.entries(data)) {
    if (!isValidEnvKey(k)) {
      fail(`secret ${quote(id)} has key ${quote(k)}, which is not a valid environment variable name (expected [A-Za-z_][A-Za-z0-9_]*)`, `rename the key in ${id}`, 'SECRET_KEY_INVALID')
    }
    if (typeof v === 'string') pairs.push([k, v])
    else if (typeof v === 'number' || typeof v === 'boolean') pairs.push([k, String(v)])
    else fail(`secret ${quote(id)} key ${quote(k)} holds a ${v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v}; expected a string, number or boolean`, `flatten ${k} in ${id} to a string (e.g. JSON-encode it)`, 'SECRET_VALUE_NESTED')
  }
  return pairs
}

/**
 * Documented rule: the parameter's name relative to the path, with '/', '-' and '.' turned into
 * '_' and upper-cased: /stage/auth/db/password under /stage/auth/ -> DB_PASSWORD.
 */
export const parameterKey = (path: string, name: string): string => {
  const prefix = path.endsWith('/') ? path : `${path}/`
  const rel = name.startsWith(prefix) ? name.slice(prefix.length) : name.split('/').pop() ?? name
  const key = rel.replace(/[/.-]/g, '_').toUpperCase()
  if (!isValidEnvKey(key)) {
    fail(`parameter ${quote(name)} maps to key ${quote(key)}, which is not a valid environment variable name (expected [A-Za-z_][A-Za-z0-9_]*)`, 'rename the parameter', 'SECRET_KEY_INVALID')
  }
  return key
}

export interface MergeInput {
  secretIds: readonly string[]
  secrets: Map<string, SecretPayload>
  parameters: { path: string; items: Parameter[] }[]
}

/** Pure: fetched payloads -> one validated map, with precedence and provenance. */
export const mergeSecrets = (input: MergeInput): MergedSecrets => {
  const values: Record<string, string> = {}
  const origin: Record<string, string> = {}
  const overrides: MergedSecrets['overrides'] = []
  const put = (key: string, value: string, from: string) => {
    if (key in origin && origin[key] !== from) overrides.push({ key, from: origin[key] ?? '', by: from })
    values[key] = value
    origin[key] = from
  }
  for (const spec of input.secretIds) {
    const optional = spec.endsWith('?')
    const id = optional ? spec.slice(0, -1) : spec
    const payload = input.secrets.get(id) ?? { kind: 'missing' }
    if (payload.kind === 'missing' && !optional) {
      fail(`secret ${quote(id)} does not exist`, `create it (a JSON object of KEY: value), or mark it optional with a trailing "?" in BOOTSTRAP_SECRET_IDS`, 'SECRET_MISSING')
    }
    for (const [k, v] of secretToPairs(id, payload)) put(k, v, id)
  }
  for (const { path, items } of input.parameters) {
    for (const p of [...items].sort((a, b) => a.name.localeCompare(b.name))) put(parameterKey(path, p.name), p.value, p.name)
  }
  return { values, origin, overrides }
}

/** Splits `id?` specs into the plain ids to fetch. */
export const secretIdsToFetch = (specs: readonly string[]): string[] =>
  specs.map(s => (s.endsWith('?') ? s.slice(0, -1) : s))
