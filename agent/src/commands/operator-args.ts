/**
 * What the operator commands (rollout, history, fleet) read alike: the service and environment
 * (validated as the agent validates them), the tag keys that find their instances, the AWS
 * region, and the report log group. Run from a laptop or a CI runner: no agent root, agent.env
 * or instance identity. Every error quotes the value and the expected form (exit 2, before any
 * AWS call).
 */
import { forbidImdsV1 } from '../aws/seams.js'
import type { ParsedArgs } from '../config/cli-args.js'
import { checkEnvironmentName, checkServiceName, quote } from '../config/names.js'
import { reportLogGroupName } from '../config/settings.js'
import { ConfigError } from '../core/errors.js'
import type { InstanceQuery } from '../operator/instances.js'

/** the group the README's setup creates; instances name theirs with BOOTSTRAP_REPORT_LOG_GROUP */
export const DEFAULT_REPORT_LOG_GROUP = '/bootstrap-agent/{environment}/{service}'
const TAG_KEY = /^[\p{L}\p{N} _.:/=+@-]{1,128}$/u

const bad = (message: string, remedy: string): never => {
  throw new ConfigError(message, remedy)
}

export const flagText = (flags: ParsedArgs['flags'], name: string): string | undefined => {
  const v = flags[name]
  return typeof v === 'string' ? v : undefined
}

/** The flags a command reads; any other flag of the shared parser is refused, not ignored. */
export const parseOperatorTarget = (command: string, args: ParsedArgs, env: NodeJS.ProcessEnv, accepted: ReadonlySet<string>): InstanceQuery => {
  const unknown = Object.keys(args.flags).filter(f => args.flags[f] !== undefined && !accepted.has(f))
  if (args.tags.length > 0) unknown.push('tag')
  if (unknown.length > 0) bad(`${command} does not take ${unknown.map(f => `--${f}`).join(', ')}`, `run bootstrap-agent ${command} --help`)
  const service = flagText(args.flags, 'service') ?? bad(`${command} needs --service`, 'pass --service <name>, e.g. --service auth-service')
  const environment = flagText(args.flags, 'environment') ?? bad(`${command} needs --environment`, 'pass --environment <name>, e.g. --environment stage')
  const serviceError = checkServiceName(service)
  if (serviceError) bad(`--service ${serviceError}`, 'fix --service')
  const environmentError = checkEnvironmentName(environment)
  if (environmentError) bad(`--environment ${environmentError}`, 'fix --environment')
  const tagKey = (flag: string, envName: string, fallback: string) => {
    const v = flagText(args.flags, flag) ?? (env[envName] || fallback)
    if (!TAG_KEY.test(v)) bad(`--${flag} / ${envName} ${quote(v)} is not a valid tag key: expected 1 to 128 letters, digits, spaces or _ . : / = + - @`, `fix --${flag}`)
    return v
  }
  return {
    service,
    environment,
    tagKeys: { service: tagKey('tag-key-service', 'BOOTSTRAP_TAG_KEY_SERVICE', 'Service'), environment: tagKey('tag-key-environment', 'BOOTSTRAP_TAG_KEY_ENVIRONMENT', 'Environment') },
  }
}

/** The region of the operator's AWS calls, with the SDK made ready for a laptop (no IMDSv1). */
export const operatorRegion = (env: NodeJS.ProcessEnv): string => {
  const region = env['AWS_REGION'] || env['AWS_DEFAULT_REGION'] ||
    bad('no AWS region: AWS_REGION is not set', 'set AWS_REGION to the region of the instances (e.g. AWS_REGION=eu-west-1)')
  forbidImdsV1(env)
  // these commands support Node >= 20.6 like the agent; the SDK's notice would land on stderr
  env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true'
  return region
}

/** --report-log-group, else BOOTSTRAP_REPORT_LOG_GROUP, else the README's name; placeholders replaced. */
export const operatorReportGroup = (args: ParsedArgs, env: NodeJS.ProcessEnv, q: InstanceQuery): string => {
  const flag = flagText(args.flags, 'report-log-group')
  const fromEnv = env['BOOTSTRAP_REPORT_LOG_GROUP'] || undefined
  const [template, from] = flag !== undefined ? [flag, '--report-log-group'] : fromEnv !== undefined ? [fromEnv, 'BOOTSTRAP_REPORT_LOG_GROUP'] : [DEFAULT_REPORT_LOG_GROUP, 'the default report log group']
  return reportLogGroupName(template, from, q.environment, q.service)
}
