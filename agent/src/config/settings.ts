/**
 * All configuration, parsed once into one read-only Settings.
 * Precedence: CLI flags > environment (BOOTSTRAP_*; the process environment wins over the
 * agent.env file user-data writes) > instance tags > defaults. Every option is a row of
 * OPTIONS, so help text, the README's configuration reference and the parser cannot drift apart.
 */
import { ConfigError } from '../core/errors.js'
import { checkBranchName, checkEnvironmentName, checkRepositoryUrl, checkServiceName, quote } from './names.js'

export type Mode = 'local' | 'aws'
/** why a run happens: boot (systemd at launch), ssm (re-bootstrap), manual, warm-pool (`watch` saw
 * a Warmed:Running instance leave the warm pool for InService) */
export const REASONS = ['boot', 'ssm', 'manual', 'warm-pool'] as const
export type Reason = (typeof REASONS)[number]

export interface TagKeys {
  service: string
  environment: string
  repository: string
  branch: string
}

export interface Settings {
  readonly mode: Mode
  readonly reason: Reason
  readonly dryRun: boolean
  readonly root: string
  readonly service: string
  readonly environment: string
  readonly branch: string
  /** where the branch came from, for the plan and the log */
  readonly branchSource: 'flag' | 'env' | 'tag' | 'branch-map'
  readonly repository: string
  readonly branchMap: Readonly<Record<string, string>>
  readonly tagKeys: Readonly<TagKeys>
  readonly serviceUser: string | undefined
  readonly keepReleases: number
  readonly gitTimeoutMs: number
  readonly gitAttempts: number
  readonly installTimeoutMs: number
  readonly buildTimeoutMs: number
  readonly healthTimeoutMs: number
  readonly stableWindowMs: number
  /** lifecycle heartbeat interval; 0 = derived from the hook's HeartbeatTimeout */
  readonly heartbeatIntervalMs: number
  /** budget of each AWS call, retries included (not the lifecycle completion's: see OPTIONS) */
  readonly awsTimeoutMs: number
  /** each PM2 CLI call and daemon question */
  readonly pm2TimeoutMs: number
  /** watch: IMDS poll interval */
  readonly watchIntervalMs: number
  /** watch: time the manifest's preStop command gets during a drain */
  readonly preStopTimeoutMs: number
  /** watch: lifetime of its IMDSv2 token, in seconds (renewed before it expires) */
  readonly imdsTokenTtlS: number
  /** Secrets Manager ids in precedence order (later wins); a trailing `?` marks one optional */
  readonly secretIds: readonly string[]
  /** SSM Parameter Store paths in precedence order (later wins, and parameters win over secrets) */
  readonly parameterPaths: readonly string[]
  /** secret holding the git credential ({"username","token"} or {"sshPrivateKey"}) */
  readonly gitCredentialSecret: string | undefined
  /** SSM parameter with agent configuration, undefined when turned off */
  readonly configParameter: string | undefined
  /** CloudWatch Logs group of the run reports ({environment}/{service} replaced); undefined: off */
  readonly reportLogGroup: string | undefined
  readonly localSecretsFile: string | undefined
  readonly manifestFile: string
  /** where releases are published and booted from (releases/cache-*.ts); undefined when off */
  readonly releaseCache: ReleaseCacheLocation | undefined
  /** when the git remote cannot be reached: deploy the commit the cache's branch pointer names */
  readonly releaseCacheFallback: boolean
  readonly logLevel: string
  readonly json: boolean
}

/** `s3://bucket/prefix`, parsed: the prefix has no leading or trailing slash ('' = the bucket's root). */
export interface ReleaseCacheLocation {
  readonly bucket: string
  readonly prefix: string
  /** the URL as given (after {environment}/{service} were replaced), for logs and the plan */
  readonly url: string
}

/** Raw string inputs per source: keys are option names (e.g. `keepReleases`). */
export interface SettingsInput {
  flags: Readonly<Record<string, string | boolean | undefined>>
  env: Readonly<Record<string, string | undefined>>
  /** values from the agent.env file (same BOOTSTRAP_* names), below the process environment */
  agentEnv: Readonly<Record<string, string>>
  /** the agent configuration parameter (keys are flag names), below agent.env, above tags */
  remoteConfig?: { source: string; values: Readonly<Record<string, string>> }
  tags: Readonly<Record<string, string>>
  mode: Mode
}

interface Option {
  name: keyof Settings | 'tagService' | 'tagEnvironment' | 'tagRepository' | 'tagBranch'
  flag: string
  env: string
  describe: string
  default?: string
}

export const OPTIONS: readonly Option[] = [
  { name: 'root', flag: 'root', env: 'BOOTSTRAP_ROOT', describe: 'directory everything lives under (/ on an instance; a sandbox in local mode)', default: '/' },
  { name: 'service', flag: 'service', env: 'BOOTSTRAP_SERVICE', describe: 'service to run on this instance (else the Service tag)' },
  { name: 'environment', flag: 'environment', env: 'BOOTSTRAP_ENVIRONMENT', describe: 'test | stage | prod ... (else the Environment tag)' },
  { name: 'branch', flag: 'branch', env: 'BOOTSTRAP_BRANCH', describe: 'branch override (else the Branch tag, else the branch map)' },
  { name: 'repository', flag: 'repository', env: 'BOOTSTRAP_REPOSITORY', describe: 'git URL (else the Repository tag)' },
  { name: 'branchMap', flag: 'branch-map', env: 'BOOTSTRAP_BRANCH_MAP', describe: 'environment=branch pairs', default: 'test=test,stage=stage,prod=main' },
  { name: 'tagService', flag: 'tag-key-service', env: 'BOOTSTRAP_TAG_KEY_SERVICE', describe: 'tag key holding the service', default: 'Service' },
  { name: 'tagEnvironment', flag: 'tag-key-environment', env: 'BOOTSTRAP_TAG_KEY_ENVIRONMENT', describe: 'tag key holding the environment', default: 'Environment' },
  { name: 'tagRepository', flag: 'tag-key-repository', env: 'BOOTSTRAP_TAG_KEY_REPOSITORY', describe: 'tag key holding the repository URL', default: 'Repository' },
  { name: 'tagBranch', flag: 'tag-key-branch', env: 'BOOTSTRAP_TAG_KEY_BRANCH', describe: 'tag key holding a branch override', default: 'Branch' },
  { name: 'serviceUser', flag: 'service-user', env: 'BOOTSTRAP_SERVICE_USER', describe: 'unprivileged user that runs npm ci, builds and the service when the agent is root (created if missing)', default: 'bootstrap-app' },
  { name: 'keepReleases', flag: 'keep-releases', env: 'BOOTSTRAP_KEEP_RELEASES', describe: 'good releases to keep on disk (1-50)', default: '3' },
  { name: 'gitTimeoutMs', flag: 'git-timeout', env: 'BOOTSTRAP_GIT_TIMEOUT', describe: 'seconds per git attempt', default: '120' },
  { name: 'gitAttempts', flag: 'git-attempts', env: 'BOOTSTRAP_GIT_ATTEMPTS', describe: 'git attempts for transient failures (1-10)', default: '3' },
  { name: 'installTimeoutMs', flag: 'install-timeout', env: 'BOOTSTRAP_INSTALL_TIMEOUT', describe: 'seconds for npm ci', default: '900' },
  { name: 'buildTimeoutMs', flag: 'build-timeout', env: 'BOOTSTRAP_BUILD_TIMEOUT', describe: 'seconds for the manifest build command', default: '900' },
  { name: 'healthTimeoutMs', flag: 'health-timeout', env: 'BOOTSTRAP_HEALTH_TIMEOUT', describe: 'seconds to wait for the health gate (the manifest may set its own)', default: '60' },
  { name: 'stableWindowMs', flag: 'stable-window', env: 'BOOTSTRAP_STABLE_WINDOW', describe: 'seconds a PM2 app must stay online without restarts when no HTTP health check is declared', default: '3' },
  { name: 'heartbeatIntervalMs', flag: 'heartbeat-interval', env: 'BOOTSTRAP_HEARTBEAT_INTERVAL', describe: 'seconds between lifecycle heartbeats; 0 derives it from the hook (a third of its HeartbeatTimeout, at least 10 s)', default: '0' },
  { name: 'awsTimeoutMs', flag: 'aws-timeout', env: 'BOOTSTRAP_AWS_TIMEOUT', describe: "seconds each AWS call (Secrets Manager, Parameter Store, Auto Scaling discovery and heartbeats) may take, retries included (1-3600); one attempt gets at most 15 s or this; the lifecycle completion keeps its own deadline (half the hook's HeartbeatTimeout, 30 s to 5 min)", default: '60' },
  { name: 'pm2TimeoutMs', flag: 'pm2-timeout', env: 'BOOTSTRAP_PM2_TIMEOUT', describe: "seconds each PM2 command or daemon question may take before it is given up (1-3600); a drain's pm2 stop gets the app's kill timeout plus this, at most 30 s more", default: '120' },
  { name: 'watchIntervalMs', flag: 'watch-interval', env: 'BOOTSTRAP_WATCH_INTERVAL', describe: 'watch: seconds between IMDS polls (target lifecycle state, spot instance-action; 1-60); doubled up to 30 s while IMDS does not answer', default: '5' },
  { name: 'preStopTimeoutMs', flag: 'pre-stop-timeout', env: 'BOOTSTRAP_PRE_STOP_TIMEOUT', describe: "watch: seconds the manifest's preStop command may take during a drain (1-600)", default: '30' },
  { name: 'imdsTokenTtlS', flag: 'imds-token-ttl', env: 'BOOTSTRAP_IMDS_TOKEN_TTL', describe: 'watch: lifetime of its IMDSv2 session token in seconds (1-21600), renewed before it expires', default: '21600' },
  { name: 'secretIds', flag: 'secret-ids', env: 'BOOTSTRAP_SECRET_IDS', describe: 'comma-separated Secrets Manager ids, later wins; {environment} and {service} are replaced; a trailing ? marks one optional', default: '{environment}/{service}' },
  { name: 'parameterPaths', flag: 'parameter-paths', env: 'BOOTSTRAP_PARAMETER_PATHS', describe: 'comma-separated SSM Parameter Store paths, later wins, parameters win over secrets', default: '/{environment}/{service}/' },
  { name: 'gitCredentialSecret', flag: 'git-credential-secret', env: 'BOOTSTRAP_GIT_CREDENTIAL_SECRET', describe: 'secret id holding {"username","token"} or {"sshPrivateKey"} for a private repository' },
  { name: 'configParameter', flag: 'config-parameter', env: 'BOOTSTRAP_CONFIG_PARAMETER', describe: 'SSM parameter holding agent configuration as JSON (keys are these flag names), so a launch template needs only tags; "none" turns it off', default: '/bootstrap/{environment}/{service}' },
  { name: 'reportLogGroup', flag: 'report-log-group', env: 'BOOTSTRAP_REPORT_LOG_GROUP', describe: 'CloudWatch Logs group (created by the operator) that gets one run report per run and per drain, stream = instance id, e.g. /bootstrap-agent/{environment}/{service}; off when unset' },
  { name: 'localSecretsFile', flag: 'secrets-file', env: 'BOOTSTRAP_SECRETS_FILE', describe: 'local mode: JSON file standing in for Secrets Manager and Parameter Store' },
  { name: 'releaseCache', flag: 'release-cache', env: 'BOOTSTRAP_RELEASE_CACHE', describe: 's3://BUCKET/PREFIX: the first instance that deploys a commit publishes the release there (after its health gate and the lifecycle hook), later instances boot from it without git, npm or build; {environment} and {service} are replaced; one prefix per environment; "none" turns it off' },
  { name: 'releaseCacheFallback', flag: 'release-cache-fallback', env: 'BOOTSTRAP_RELEASE_CACHE_FALLBACK', describe: 'on | off: when the git remote cannot be reached (after the git attempts), deploy the commit the release cache last published healthy for this service, environment and branch', default: 'on' },
  { name: 'manifestFile', flag: 'manifest', env: 'BOOTSTRAP_MANIFEST', describe: 'manifest file name at the repository root', default: 'bootstrap-agent.json' },
  { name: 'logLevel', flag: 'log-level', env: 'BOOTSTRAP_LOG_LEVEL', describe: 'trace | debug | info | warn | error', default: 'info' },
]

const bad = (msg: string, remedy: string): never => {
  throw new ConfigError(msg, remedy)
}

interface Picked {
  value: string
  from: string
}

const pick = (input: SettingsInput, opt: Option, tagKey?: string): Picked | undefined => {
  const flag = input.flags[opt.flag]
  if (typeof flag === 'string') return { value: flag, from: `--${opt.flag}` }
  const env = input.env[opt.env]
  if (env !== undefined && env !== '') return { value: env, from: opt.env }
  const fileEnv = input.agentEnv[opt.env]
  if (fileEnv !== undefined && fileEnv !== '') return { value: fileEnv, from: `${opt.env} (agent.env)` }
  const remote = input.remoteConfig?.values[opt.flag]
  if (remote !== undefined && remote !== '') return { value: remote, from: `"${opt.flag}" in ${input.remoteConfig?.source}` }
  if (tagKey !== undefined) {
    const tag = input.tags[tagKey]
    if (tag !== undefined) return { value: tag, from: `tag ${tagKey}` }
  }
  if (opt.default !== undefined) return { value: opt.default, from: 'default' }
  return undefined
}

const option = (name: Option['name']): Option => {
  const o = OPTIONS.find(x => x.name === name)
  if (!o) throw new Error(`unknown option ${name}`)
  return o
}

const intIn = (p: Picked, min: number, max: number, unit: number): number => {
  if (!/^\d+$/.test(p.value) || Number(p.value) < min || Number(p.value) > max) {
    bad(`${p.from} = ${quote(p.value)} is not valid: expected a whole number from ${min} to ${max}`, `fix ${p.from}`)
  }
  return Number(p.value) * unit
}

export const parseBranchMap = (p: Picked): Record<string, string> => {
  const map: Record<string, string> = {}
  for (const pair of p.value.split(',').map(s => s.trim()).filter(Boolean)) {
    const m = /^([^=]+)=(.+)$/.exec(pair)
    const env = m?.[1]?.trim()
    const branch = m?.[2]?.trim()
    if (!env || !branch) {
      return bad(`${p.from} = ${quote(p.value)} is not valid: expected environment=branch pairs separated by commas, e.g. "test=test,stage=stage,prod=main"`, `fix ${p.from}`)
    }
    const e = checkEnvironmentName(env) ?? checkBranchName(branch)
    if (e) bad(`${p.from}: ${e}`, `fix ${p.from}`)
    map[env] = branch
  }
  return map
}

const list = (p: Picked | undefined): string[] =>
  (p?.value ?? '').split(',').map(s => s.trim()).filter(Boolean)

const configParameter = (p: Picked, env: string, service: string): string | undefined => {
  if (p.value === 'none') return undefined
  const name = expand(p.value, env, service)
  if (!/^\/[A-Za-z0-9/_.-]+$/.test(name)) bad(`${p.from} = ${quote(p.value)} is not valid: expected a parameter name like /bootstrap/{environment}/{service}, or "none"`, `fix ${p.from}`)
  return name
}

/** CloudWatch Logs' rule for log group names */
const LOG_GROUP_RE = /^[A-Za-z0-9_\-/.#]{1,512}$/

/** The run reports' log group, `{environment}` and `{service}` replaced (validated names). */
export const reportLogGroupName = (template: string, from: string, environment: string, service: string): string => {
  const name = expand(template, environment, service)
  if (!LOG_GROUP_RE.test(name)) {
    bad(`${from} = ${quote(template)} is not valid: expected a CloudWatch Logs group name of 1 to 512 letters, digits and _-/.# ({environment} and {service} are replaced), e.g. /bootstrap-agent/{environment}/{service}`, `fix ${from}`)
  }
  return name
}

/** `{environment}/{service}` templates; the names were validated, so they cannot inject paths. */
const expand = (tpl: string, env: string, service: string): string =>
  tpl.replaceAll('{environment}', env).replaceAll('{service}', service)

const reportLogGroup = (p: Picked | undefined, environment: string, service: string): string | undefined =>
  p === undefined ? undefined : reportLogGroupName(p.value, p.from, environment, service)

const required = (p: Picked | undefined, what: string, opt: Option, tagKey: string, mode: Mode): Picked => {
  if (p && p.value.trim() !== '') return p
  const tagHow = mode === 'local'
    ? `--tag ${tagKey}=<value>`
    : `the instance tag "${tagKey}" (and allow instance metadata tags or ec2:DescribeTags)`
  return bad(`the ${what} is not set`, `set it with ${tagHow}, --${opt.flag}, or ${opt.env} in the environment or agent.env`)
}

const checkLogLevel = (logLevel: Picked): string => {
  if (!['trace', 'debug', 'info', 'warn', 'error'].includes(logLevel.value)) {
    bad(`${logLevel.from} = ${quote(logLevel.value)} is not valid: expected trace, debug, info, warn or error`, `fix ${logLevel.from}`)
  }
  return logLevel.value
}

const checkRoot = (root: Picked): string => {
  if (!root.value.startsWith('/')) bad(`${root.from} = ${quote(root.value)} is not valid: expected an absolute path`, `fix ${root.from}`)
  return root.value.replace(/\/+$/, '') || '/'
}

const checkManifestFile = (manifestFile: Picked): string => {
  if (!/^[A-Za-z0-9._-]+$/.test(manifestFile.value) || manifestFile.value.startsWith('.')) {
    bad(`${manifestFile.from} = ${quote(manifestFile.value)} is not valid: expected a plain file name at the repository root`, `fix ${manifestFile.from}`)
  }
  return manifestFile.value
}

/** S3's bucket naming rules (lower case, digits, dots, hyphens; 3-63) and a prefix of plain path
 * segments: the prefix becomes part of every object key the agent reads and writes. */
const S3_URL_RE = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/

const checkReleaseCache = (p: Picked | undefined, env: string, service: string, mode: Mode): ReleaseCacheLocation | undefined => {
  if (p === undefined || p.value === 'none') return undefined
  const url = expand(p.value, env, service)
  const m = S3_URL_RE.exec(url)
  const bucket = m?.[1]
  const prefix = (m?.[2] ?? '').replace(/\/+$/, '')
  const segmentsOk = prefix === '' || prefix.split('/').every(seg => /^[A-Za-z0-9_.-]+$/.test(seg) && seg !== '.' && seg !== '..')
  if (bucket === undefined || bucket.includes('..') || !segmentsOk) {
    return bad(`${p.from} = ${quote(p.value)} is not valid: expected s3://BUCKET/PREFIX (a bucket name of lower-case letters, digits, dots and hyphens; a prefix of letters, digits and _.- separated by single slashes), or "none"`, `fix ${p.from}`)
  }
  if (mode === 'local') bad(`${p.from} = ${quote(p.value)}: the release cache lives in S3, and local mode makes no AWS call`, `leave ${p.from} out in local mode (or set it to "none")`)
  return Object.freeze({ bucket, prefix, url: `s3://${bucket}${prefix ? `/${prefix}` : ''}` })
}

const onOff = (p: Picked): boolean => {
  if (p.value !== 'on' && p.value !== 'off') bad(`${p.from} = ${quote(p.value)} is not valid: expected on or off`, `fix ${p.from}`)
  return p.value === 'on'
}

const checkServiceUser = (serviceUser: Picked): string => {
  if (!/^[a-z_][a-z0-9_-]{0,30}$/.test(serviceUser.value)) {
    bad(`${serviceUser.from} = ${quote(serviceUser.value)} is not a valid user name: expected lower-case letters, digits, _ and -`, `fix ${serviceUser.from}`)
  }
  if (serviceUser.value === 'root') bad(`${serviceUser.from} = "root": repo code never runs as root`, 'name an unprivileged user')
  return serviceUser.value
}

/** The AWS budget: a row of its own because the agent configuration parameter is read with it,
 * before the rest of the settings exist (resolveConfigLocation). */
const awsTimeoutMs = (get: (name: Option['name']) => Picked | undefined): number => intIn(get('awsTimeoutMs')!, 1, 3600, 1000)

/** The lifecycle heartbeat interval, the AWS and PM2 timeouts and the options of `watch`, parsed
 * with their bounds: part of Settings (so a bad value in agent.env fails a run too, not only the
 * watch) and of WatchSettings (its drain stops PM2 apps and answers the terminating hook). */
const watchOptions = (get: (name: Option['name']) => Picked | undefined) => ({
  heartbeatIntervalMs: intIn(get('heartbeatIntervalMs')!, 0, 3600, 1000),
  awsTimeoutMs: awsTimeoutMs(get),
  pm2TimeoutMs: intIn(get('pm2TimeoutMs')!, 1, 3600, 1000),
  watchIntervalMs: intIn(get('watchIntervalMs')!, 1, 60, 1000),
  preStopTimeoutMs: intIn(get('preStopTimeoutMs')!, 1, 600, 1000),
  imdsTokenTtlS: intIn(get('imdsTokenTtlS')!, 1, 21600, 1),
})

const tagKeysOf = (get: (name: Option['name']) => Picked | undefined): TagKeys => ({
  service: get('tagService')!.value,
  environment: get('tagEnvironment')!.value,
  repository: get('tagRepository')!.value,
  branch: get('tagBranch')!.value,
})

/** The service and environment, validated: they name the agent configuration parameter. */
const serviceAndEnvironment = (input: SettingsInput, get: (name: Option['name'], tagKey?: string) => Picked | undefined, tagKeys: TagKeys) => {
  const service = required(get('service', tagKeys.service), 'service', option('service'), tagKeys.service, input.mode)
  const serviceErr = checkServiceName(service.value)
  if (serviceErr) bad(`${service.from}: ${serviceErr}`, `fix ${service.from}`)

  const environment = required(get('environment', tagKeys.environment), 'environment', option('environment'), tagKeys.environment, input.mode)
  const envErr = checkEnvironmentName(environment.value)
  if (envErr) bad(`${environment.from}: ${envErr}`, `fix ${environment.from}`)
  return { service, environment }
}

/**
 * Where the agent configuration parameter is, from the layers below it alone (flags, environment,
 * agent.env, tags): only the service and environment must be known, so the parameter can supply
 * the repository, the branch map and the rest (config/resolve-settings.ts). The AWS budget of reading it
 * comes from the same layers: an `aws-timeout` in the parameter applies from the next call on.
 */
export const resolveConfigLocation = (input: SettingsInput): { configParameter: string | undefined; localSecretsFile: string | undefined; awsTimeoutMs: number } => {
  const get = (name: Option['name'], tagKey?: string) => pick(input, option(name), tagKey)
  const { service, environment } = serviceAndEnvironment(input, get, tagKeysOf(get))
  return {
    configParameter: configParameter(get('configParameter')!, environment.value, service.value),
    localSecretsFile: get('localSecretsFile')?.value,
    awsTimeoutMs: awsTimeoutMs(get),
  }
}

/**
 * The run report's log group for a run whose settings could not be resolved: its report must go
 * out all the same (a bad tag is the failure an operator most needs to see). From the layers
 * below the agent configuration parameter; undefined when reports are off, or when the group
 * names a service or environment that is not known or not valid.
 */
export const reportLogGroupOf = (input: SettingsInput): string | undefined => {
  const get = (name: Option['name'], tagKey?: string) => pick(input, option(name), tagKey)
  const p = get('reportLogGroup')
  if (p === undefined) return undefined
  try {
    if (!/\{(environment|service)\}/.test(p.value)) return reportLogGroupName(p.value, p.from, '', '')
    const { service, environment } = serviceAndEnvironment(input, get, tagKeysOf(get))
    return reportLogGroupName(p.value, p.from, environment.value, service.value)
  } catch {
    return undefined
  }
}

export const resolveSettings = (input: SettingsInput): Settings => {
  const get = (name: Option['name'], tagKey?: string) => pick(input, option(name), tagKey)
  const tagKeys = tagKeysOf(get)
  const { service, environment } = serviceAndEnvironment(input, get, tagKeys)

  const branchMap = parseBranchMap(get('branchMap')!)
  const explicitBranch = get('branch', tagKeys.branch)
  let branch: string
  let branchSource: Settings['branchSource']
  if (explicitBranch) {
    const e = checkBranchName(explicitBranch.value)
    if (e) bad(`${explicitBranch.from}: ${e}`, `fix ${explicitBranch.from}`)
    branch = explicitBranch.value
    branchSource = explicitBranch.from.startsWith('--') ? 'flag' : explicitBranch.from.startsWith('tag') ? 'tag' : 'env'
  } else {
    const mapped = branchMap[environment.value]
    if (mapped === undefined) {
      return bad(
        `no branch for environment ${quote(environment.value)} (from ${environment.from}): the branch map knows ${Object.keys(branchMap).map(k => quote(k)).join(', ')}`,
        `use one of those environments, add "${environment.value}=<branch>" to BOOTSTRAP_BRANCH_MAP, or set a ${tagKeys.branch} tag / --branch`,
      )
    }
    branch = mapped
    branchSource = 'branch-map'
  }

  const repository = required(get('repository', tagKeys.repository), 'repository URL', option('repository'), tagKeys.repository, input.mode)
  const repoErr = checkRepositoryUrl(repository.value)
  if (repoErr) bad(`${repository.from}: ${repoErr}`, `fix ${repository.from}`)
  if (/^[a-z]+:\/\/[^/@]*@/i.test(repository.value) && !/^ssh:/i.test(repository.value)) {
    // userinfo in an https URL is a credential that would land in .git/config and in logs
    bad(`${repository.from}: the repository URL carries credentials (user@ or user:token@)`, 'remove them from the URL and store them in the secret named by BOOTSTRAP_GIT_CREDENTIAL_SECRET')
  }

  const logLevel = checkLogLevel(get('logLevel')!)
  const root = checkRoot(get('root')!)

  const secretIds = list(get('secretIds')).map(s => expand(s, environment.value, service.value))
  for (const id of secretIds) {
    if (!/^[A-Za-z0-9/_+=.@-]+\??$/.test(id)) bad(`secret id ${quote(id)} is not valid: expected letters, digits and /_+=.@- (Secrets Manager's rule)`, 'fix BOOTSTRAP_SECRET_IDS / --secret-ids')
  }
  const parameterPaths = list(get('parameterPaths')).map(s => expand(s, environment.value, service.value))
  for (const p of parameterPaths) {
    if (!/^\/[A-Za-z0-9/_.-]*$/.test(p)) bad(`parameter path ${quote(p)} is not valid: expected an absolute path of letters, digits and /_.-`, 'fix BOOTSTRAP_PARAMETER_PATHS / --parameter-paths')
  }

  const manifestFile = checkManifestFile(get('manifestFile')!)
  const serviceUser = checkServiceUser(get('serviceUser')!)

  const reasonFlag = input.flags['reason'] ?? 'manual'
  const reason = REASONS.find(r => r === reasonFlag) ??
    bad(`--reason = ${quote(String(reasonFlag))} is not valid: expected ${REASONS.join(', ')}`, 'fix --reason')

  return Object.freeze({
    mode: input.mode,
    reason,
    dryRun: input.flags['dry-run'] === true,
    root,
    service: service.value,
    environment: environment.value,
    branch,
    branchSource,
    repository: repository.value,
    branchMap: Object.freeze(branchMap),
    tagKeys: Object.freeze(tagKeys),
    serviceUser,
    keepReleases: intIn(get('keepReleases')!, 1, 50, 1),
    gitTimeoutMs: intIn(get('gitTimeoutMs')!, 1, 3600, 1000),
    gitAttempts: intIn(get('gitAttempts')!, 1, 10, 1),
    installTimeoutMs: intIn(get('installTimeoutMs')!, 1, 7200, 1000),
    buildTimeoutMs: intIn(get('buildTimeoutMs')!, 1, 7200, 1000),
    healthTimeoutMs: intIn(get('healthTimeoutMs')!, 1, 3600, 1000),
    stableWindowMs: intIn(get('stableWindowMs')!, 0, 600, 1000),
    ...watchOptions(get),
    secretIds: Object.freeze(secretIds),
    parameterPaths: Object.freeze(parameterPaths),
    gitCredentialSecret: get('gitCredentialSecret')?.value,
    configParameter: configParameter(get('configParameter')!, environment.value, service.value),
    reportLogGroup: reportLogGroup(get('reportLogGroup'), environment.value, service.value),
    localSecretsFile: get('localSecretsFile')?.value,
    manifestFile,
    releaseCache: checkReleaseCache(get('releaseCache'), environment.value, service.value, input.mode),
    releaseCacheFallback: onOff(get('releaseCacheFallback')!),
    logLevel,
    json: input.flags['json'] === true,
  })
}

/** Settings safe to log in full: no field holds a secret value, only names. */
export const effectiveSettings = (s: Settings): Record<string, unknown> => ({ ...s })

/** What `watch` needs: no tags, no repository, no secrets. The service is the one the last run
 * deployed (state.json) unless --service / BOOTSTRAP_SERVICE names it. Sources: flags, the
 * environment and agent.env (not the SSM agent configuration parameter: the watch makes no call
 * before a drain, and a drain must not depend on one). */
export type WatchSettings = Pick<Settings,
  'root' | 'manifestFile' | 'logLevel' | 'heartbeatIntervalMs' | 'awsTimeoutMs' | 'pm2TimeoutMs' | 'watchIntervalMs' | 'preStopTimeoutMs' | 'imdsTokenTtlS'
> & {
  readonly service: string | undefined
  readonly serviceUser: string
  /** the run reports' log group as configured, {environment} and {service} not yet replaced: the
   * watch knows them from state.json only when it drains (reportLogGroupName) */
  readonly reportLogGroupTemplate: string | undefined
}

export const resolveWatchSettings = (input: Omit<SettingsInput, 'tags'>): WatchSettings => {
  const get = (name: Option['name']) => pick({ ...input, tags: {} }, option(name))
  const service = get('service')
  if (service) {
    const e = checkServiceName(service.value)
    if (e) bad(`${service.from}: ${e}`, `fix ${service.from}`)
  }
  const group = get('reportLogGroup')
  // checked now, with stand-in names: a bad value fails the watch at its start, not at a drain
  if (group) reportLogGroupName(group.value, group.from, 'environment', 'service')
  return Object.freeze({
    root: checkRoot(get('root')!),
    service: service?.value,
    reportLogGroupTemplate: group?.value,
    serviceUser: checkServiceUser(get('serviceUser')!),
    manifestFile: checkManifestFile(get('manifestFile')!),
    logLevel: checkLogLevel(get('logLevel')!),
    ...watchOptions(get),
  })
}
