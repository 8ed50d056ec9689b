/**
 * Agent configuration kept in one SSM parameter (default /bootstrap/<environment>/<service>):
 * a JSON object whose keys are the CLI flag names, e.g.
 *   {"repository": "https://github.com/org/auth.git", "branch-map": "test=test,prod=main",
 *    "secret-ids": "{environment}/shared?,{environment}/{service}", "health-timeout": "90"}
 * so a launch template needs only the Service and Environment tags. It sits below flags, the
 * environment and agent.env, above tags. It is configuration, not a secret store: it cannot name
 * the service, environment or root (they locate the parameter itself).
 */
import { ConfigError } from '../core/errors.js'
import { quote } from './names.js'
import { OPTIONS } from './settings.js'

const NOT_REMOTE = new Set(['service', 'environment', 'root', 'config-parameter', 'secrets-file', 'tag-key-service', 'tag-key-environment'])
export const REMOTE_KEYS: readonly string[] = OPTIONS.map(o => o.flag).filter(f => !NOT_REMOTE.has(f))

/** Pure: the parameter's text -> flag-name -> string value. */
export const parseAgentConfig = (text: string, name: string): Record<string, string> => {
  const fail = (why: string): never => {
    throw new ConfigError(`agent configuration parameter ${quote(name)} ${why}`, `fix the parameter (a JSON object with keys among: ${REMOTE_KEYS.join(', ')}), or set BOOTSTRAP_CONFIG_PARAMETER=none`, 'AGENT_CONFIG_INVALID')
  }
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch {
    return fail('is not valid JSON')
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return fail('is not a JSON object')
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(data)) {
    if (!REMOTE_KEYS.includes(k)) fail(`has unknown key ${quote(k)}`)
    if (typeof v === 'string') out[k] = v
    else if (typeof v === 'number' || typeof v === 'boolean') out[k] = String(v)
    else fail(`key ${quote(k)} must be a string or number`)
  }
  return out
}
