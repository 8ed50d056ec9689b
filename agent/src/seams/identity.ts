/**
 * The Identity seam: who this instance is and what its tags say. On AWS it is IMDSv2 (+
 * DescribeTags); in local mode the tags come from `--tag Key=Value` flags.
 */
import { ConfigError } from '../core/errors.js'
import { quote } from '../config/names.js'

export interface InstanceIdentity {
  instanceId: string
  region: string | undefined
  availabilityZone: string | undefined
  tags: Readonly<Record<string, string>>
  /** e.g. Pending:Wait, InService (AWS only) */
  lifecycleState: string | undefined
  source: string
}

export interface Identity {
  identify(): Promise<InstanceIdentity>
}

/** `Key=Value` strings from --tag flags; values are untrusted and validated later by Settings. */
export const parseTagFlags = (flags: readonly string[]): Record<string, string> => {
  const tags: Record<string, string> = {}
  for (const f of flags) {
    const i = f.indexOf('=')
    const key = i > 0 ? f.slice(0, i) : ''
    if (!key || key.length > 128 || /[\x00-\x1f]/.test(key)) {
      throw new ConfigError(`--tag ${quote(f)} is not valid: expected Key=Value (key 1-128 characters)`, 'write it as --tag Service=auth-service', 'TAG_INVALID')
    }
    tags[key] = f.slice(i + 1)
  }
  return tags
}

export const localIdentity = (tags: Record<string, string>): Identity => ({
  async identify() {
    return { instanceId: 'local', region: undefined, availabilityZone: undefined, tags, lifecycleState: undefined, source: 'local (--tag flags)' }
  },
})
