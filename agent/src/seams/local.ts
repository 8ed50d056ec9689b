/**
 * The seams of local mode: real git, real PM2, real child processes; tags from --tag flags,
 * secrets from a local JSON file, no lifecycle hook. AWS mode replaces identity, secrets and hook.
 */
import { ConfigError } from '../core/errors.js'
import { createExec } from '../core/exec.js'
import { createGit } from '../git/client.js'
import { localIdentity } from './identity.js'
import { noLifecycleHook } from './lifecycle-hook.js'
import { createLocalSecretsSource } from '../secrets/local.js'
import type { Logger } from '../core/logger.js'
import { createPm2 } from '../pm2/cli.js'
import type { Seams } from '../run/context.js'
import type { SecretsSource } from '../secrets/source.js'

const noSecretsFile: SecretsSource = {
  description: 'no secrets file',
  async getSecrets() {
    throw new ConfigError('local mode has no secrets file', 'pass --secrets-file FILE (or BOOTSTRAP_SECRETS_FILE); see README "Local mode"', 'SECRETS_FILE_MISSING')
  },
  async getParametersByPath() {
    throw new ConfigError('local mode has no secrets file', 'pass --secrets-file FILE (or BOOTSTRAP_SECRETS_FILE); see README "Local mode"', 'SECRETS_FILE_MISSING')
  },
  // no file: no agent configuration parameter either
  async getParameter() {
    return undefined
  },
}

export const createLocalSeams = (tags: Record<string, string>, log: Logger): Seams => {
  const exec = createExec()
  let secrets: SecretsSource | undefined
  return {
    exec,
    identity: localIdentity(tags),
    git: s => createGit({
      exec,
      timeoutMs: s.gitTimeoutMs,
      attempts: s.gitAttempts,
      onRetry: ({ attempt, error }) => log.warn({ attempt, error }, 'git attempt failed; retrying'),
    }),
    secrets: s => (secrets ??= s.localSecretsFile ? createLocalSecretsSource(s.localSecretsFile) : noSecretsFile),
    pm2: (s, p, user) => createPm2({ exec, pm2Home: p.pm2Home, home: p.home, user: user?.switchTo, timeoutMs: s.pm2TimeoutMs }),
    hook: () => noLifecycleHook('local mode'),
    // run reports go to CloudWatch Logs: local mode makes no AWS call
    reportSink: () => undefined,
    // settings refuse a release cache in local mode: it is S3, and local mode makes no AWS call
    cacheStore: async () => undefined,
    now: () => new Date(),
  }
}
