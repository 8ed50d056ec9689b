/**
 * The git credential, read from the secret named by BOOTSTRAP_GIT_CREDENTIAL_SECRET:
 * {"username": "...", "token": "..."} for HTTPS, {"sshPrivateKey": "..."} for a deploy key.
 * The values go to the run's scrubber at once, so no log line can carry them.
 */
import { ConfigError } from '../../core/errors.js'
import type { GitCredential } from '../../git/client.js'
import { quote } from '../../config/names.js'
import type { Scrubber } from '../../secrets/redact.js'
import type { SecretsSource } from '../../secrets/source.js'

export const readGitCredential = async (source: SecretsSource, id: string, scrubber: Scrubber): Promise<GitCredential> => {
  const payload = (await source.getSecrets([id])).get(id)
  const bad = (why: string) =>
    new ConfigError(`git credential secret ${quote(id)} ${why}`, `store {"username":"x-access-token","token":"..."} or {"sshPrivateKey":"..."} in ${id}`, 'GIT_CREDENTIAL_INVALID')
  if (!payload || payload.kind === 'missing') throw bad('does not exist')
  if (payload.kind === 'binary') throw bad('is binary')
  let data: unknown
  try {
    data = JSON.parse(payload.text)
  } catch {
    throw bad('is not JSON')
  }
  const o = typeof data === 'object' && data !== null ? (data as Record<string, unknown>) : {}
  const str = (k: string) => (typeof o[k] === 'string' && o[k] !== '' ? (o[k] as string) : undefined)
  const token = str('token')
  const key = str('sshPrivateKey')
  scrubber.add([token, key].filter((v): v is string => v !== undefined))
  if (token) return { kind: 'token', username: str('username') ?? 'x-access-token', token }
  if (key) {
    const knownHosts = str('knownHosts')
    return knownHosts ? { kind: 'ssh', privateKey: key, knownHosts } : { kind: 'ssh', privateKey: key }
  }
  throw bad('has neither "token" nor "sshPrivateKey"')
}
