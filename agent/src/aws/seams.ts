/**
 * The seams of AWS mode: local mode's real git, PM2 and child processes, with identity (IMDSv2
 * + tags), secrets (Secrets Manager + Parameter Store) and the lifecycle hook replaced by their
 * AWS implementations. Endpoints, region and credentials follow the SDK's own conventions
 * (AWS_REGION, AWS_ENDPOINT_URL[_<SERVICE>], AWS_EC2_METADATA_SERVICE_ENDPOINT, the standard
 * credential chain), so tests and VPC endpoints need no flag of ours.
 */
import { createAwsIdentity } from './identity.js'
import { createAwsLifecycleHook } from './lifecycle-hook.js'
import { createCloudWatchReportSink } from './report-sink.js'
import { createAwsSecretsSource } from './secrets.js'
import { ConfigError } from '../core/errors.js'
import type { Identity } from '../seams/identity.js'
import { createLocalSeams } from '../seams/local.js'
import type { Logger } from '../core/logger.js'
import type { Seams } from '../run/context.js'
import type { SecretsSource } from '../secrets/source.js'

export interface AwsSeamsOptions {
  /** replaces IMDSv2 (tests, or a caller that identified the instance already) */
  identity?: Identity
  /** where AWS_REGION is read and AWS_EC2_METADATA_V1_DISABLED is set (process.env) */
  env?: NodeJS.ProcessEnv
}

/**
 * The SDK's credential chain reads instance-profile credentials from IMDS and, unless told
 * otherwise, retries *without a token* (IMDSv1) when the token request fails. Invariant 8 says
 * never; this is the SDK's documented switch, read when credentials are first resolved. The
 * Exec seam never passes the agent's environment on, so it does not reach repo code.
 */
export const forbidImdsV1 = (env: NodeJS.ProcessEnv): void => {
  env['AWS_EC2_METADATA_V1_DISABLED'] = 'true'
}

const noRegion = (): never => {
  throw new ConfigError('no AWS region: instance metadata gave none and AWS_REGION is not set', 'set AWS_REGION (e.g. in /etc/bootstrap-agent/agent.env)', 'AWS_REGION_MISSING')
}

/**
 * `tags` are --tag flags: they win over the instance's own tags (a one-off override; the
 * identity's source says so).
 */
export const createAwsSeams = (tags: Record<string, string>, log: Logger, opts: AwsSeamsOptions = {}): Seams => {
  const env = opts.env ?? process.env
  forbidImdsV1(env)
  // the agent supports Node >= 20.6 on purpose (design.md section 7) with a lockfile-pinned SDK;
  // the SDK's notice about its future Node 22 floor would land on stderr of every run
  env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true'
  const inner = opts.identity ?? createAwsIdentity({ log })
  /** the instance's region, once identify() ran: the default for Secrets Manager and SSM */
  let instanceRegion: string | undefined
  const identity: Identity = {
    async identify() {
      const id = await inner.identify()
      instanceRegion = id.region
      if (Object.keys(tags).length === 0) return id
      return { ...id, tags: { ...id.tags, ...tags }, source: `${id.source} + --tag flags` }
    },
  }
  const region = () => env['AWS_REGION'] || instanceRegion || noRegion()
  /** one source per AWS budget: the agent configuration parameter is read before its own
   * `aws-timeout` (if it has one) is known, the other calls after */
  let secrets: { budgetMs: number; source: SecretsSource } | undefined
  return {
    ...createLocalSeams(tags, log),
    identity,
    secrets: s => {
      if (secrets?.budgetMs !== s.awsTimeoutMs) {
        // AWS_REGION first: secrets may live in another region than the instance
        const source = createAwsSecretsSource({ region: region(), log, retry: { totalMs: s.awsTimeoutMs } })
        secrets = { budgetMs: s.awsTimeoutMs, source }
      }
      return secrets.source
    },
    // the S3 SDK (a few MB of code) is loaded only when a cache is configured; a bucket in
    // another region than AWS_REGION / the instance's is followed by the SDK
    cacheStore: async s => {
      if (!s.releaseCache) return undefined
      const { createS3CacheStore } = await import('./s3-cache-store.js')
      return createS3CacheStore({ ...s.releaseCache, region: region(), env, log, retry: { totalMs: s.awsTimeoutMs } })
    },
    // the group is always in the instance's own region; without settings (they could not be
    // resolved) the hook keeps the default budgets, to answer a waiting action all the same
    hook: (s, id) => createAwsLifecycleHook({
      ...(s && s.heartbeatIntervalMs > 0 ? { heartbeatMs: s.heartbeatIntervalMs } : {}),
      ...(s ? { retry: { totalMs: s.awsTimeoutMs } } : {}),
      instanceId: id.instanceId,
      region: id.region || env['AWS_REGION'] || noRegion(),
      ...(id.lifecycleState === undefined ? {} : { lifecycleState: id.lifecycleState }),
      log,
    }),
    // AWS_REGION first, as for secrets: the group may live in another region than the instance
    reportSink: (group, id) => {
      const region = env['AWS_REGION'] || id.region
      return region ? createCloudWatchReportSink({ group, region, log }) : undefined
    },
  }
}
