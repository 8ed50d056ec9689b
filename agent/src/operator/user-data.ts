/**
 * Launch-template user-data: validate the named parameters of `render-user-data` and fill a
 * template from user-data/templates. Pure: the command reads the template and the systemd unit
 * and writes the result.
 *
 * Parameters are a closed set: the template's own (artifact, region, Node install method) and
 * the agent settings written into agent.env (the BOOTSTRAP_* names of config/settings.ts, plus the SDK's
 * endpoint variables). None of them holds a secret, only names of secrets: user-data is readable
 * by every process on the instance (IMDS) and by anyone allowed to describe the launch template.
 * So a name outside the set is an error, one that looks like a secret says so, and every value
 * is scanned for credential shapes (URL userinfo, access key ids, private keys, signatures).
 *
 * Quoting: scalar values reach the script as single-quoted shell words; agent.env and the unit
 * are written through quoted heredocs (no expansion); agent.env values are quoted so that both
 * config/agent-env.ts and systemd's EnvironmentFile= read them back byte-exact.
 */
import { ConfigError, isAgentError } from '../core/errors.js'
import { quote } from '../config/names.js'
import { OPTIONS, resolveSettings } from '../config/settings.js'

/** EC2's limit on user-data, before base64. */
export const USER_DATA_MAX_BYTES = 16 * 1024

export const NODE_INSTALL_METHODS = ['al2023', 'ubuntu', 'preinstalled'] as const
export type NodeInstallMethod = (typeof NODE_INSTALL_METHODS)[number]

interface TemplateParam {
  name: string
  describe: string
  /** error text (without the parameter name) or undefined */
  check: (v: string) => string | undefined
}

const SHA256_RE = /^[0-9a-f]{64}$/
const sha256 = (v: string) => (SHA256_RE.test(v) ? undefined : 'expected 64 lower-case hex digits (the first field of sha256sum)')
const downloadUrl = (v: string) =>
  /^(https?|s3):\/\/[^\s/]+\/[^\s]*$/.test(v) && !/[\x00-\x1f\x7f]/.test(v)
    ? undefined
    : 'expected an https://, http:// or s3:// URL without whitespace'

export const TEMPLATE_PARAMS: readonly TemplateParam[] = [
  { name: 'artifact-url', describe: 'release tarball (npm run package): https://..., or s3://bucket/key fetched with the instance profile and the AWS CLI', check: downloadUrl },
  { name: 'artifact-sha256', describe: 'sha256 of the tarball (its .sha256 file); checked before anything is installed', check: sha256 },
  { name: 'region', describe: 'AWS region: for s3:// downloads, and AWS_REGION in agent.env (where secrets are read)', check: v => (/^[a-z]{2}(-[a-z]+)+-\d+$/.test(v) ? undefined : 'expected a region like eu-west-1') },
  { name: 'node-install', describe: `how Node gets onto the instance: ${NODE_INSTALL_METHODS.join(' | ')}`, check: v => (NODE_INSTALL_METHODS.some(m => m === v) ? undefined : `expected ${NODE_INSTALL_METHODS.join(', ')}`) },
  { name: 'node-major', describe: 'al2023 only: the nodejs<N> package to install (default 22)', check: v => (/^\d+$/.test(v) && Number(v) >= 22 && Number(v) < 100 ? undefined : 'expected a Node major version of 22 or newer') },
  { name: 'node-url', describe: 'ubuntu only (required): official Node tarball, e.g. https://nodejs.org/dist/v22.x.y/node-v22.x.y-linux-x64.tar.xz', check: downloadUrl },
  { name: 'node-sha256', describe: 'ubuntu only (required): sha256 of that tarball (from SHASUMS256.txt)', check: sha256 },
]
const REQUIRED = ['artifact-url', 'artifact-sha256', 'region', 'node-install']
const ONLY_FOR: Record<string, NodeInstallMethod> = { 'node-major': 'al2023', 'node-url': 'ubuntu', 'node-sha256': 'ubuntu' }

/** settings that are no instance configuration, and why */
const NOT_IN_AGENT_ENV: Readonly<Record<string, string>> = {
  BOOTSTRAP_ROOT: 'the root is / on an instance (and agent.env is found under it)',
  BOOTSTRAP_SECRETS_FILE: "it is local mode's stand-in for Secrets Manager and Parameter Store",
}
export const AGENT_ENV_PARAMS: readonly string[] = OPTIONS.map(o => o.env).filter(e => !(e in NOT_IN_AGENT_ENV))
/** the SDK's endpoint overrides (VPC endpoints): AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE> */
const ENDPOINT_RE = /^AWS_ENDPOINT_URL(_[A-Z0-9]+)*$/

const SECRET_NAME_RE = /SECRET|TOKEN|PASSW|PASSPHRASE|CREDENTIAL|PRIVATE|API_?KEY|ACCESS_?KEY|(^|[_-])KEY$/i
const SECRET_VALUE_SHAPES: ReadonlyArray<[RegExp, string]> = [
  // ssh://git@host/... names a user, not a credential; user:password@ is one in any scheme, and
  // https://token@host/ is how git hosts take tokens
  [/^[a-z][a-z0-9+.-]*:\/\/[^/?#\s@]*:[^/?#\s@]*@/i, 'a URL with a password in it'],
  [/^(https?|s3):\/\/[^/?#\s]*@/i, 'a URL with credentials in it'],
  [/\b(AKIA|ASIA)[A-Z0-9]{16}\b/, 'an AWS access key id'],
  [/-----BEGIN [A-Z ]*PRIVATE KEY-----/, 'a private key'],
  [/[?&](X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature|sig)=/i, 'a signed (presigned) URL, which is a credential and expires'],
  [/\b(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|glpat-[A-Za-z0-9_-]{20})/, 'an access token'],
]

const allowedList = (): string =>
  `template parameters ${TEMPLATE_PARAMS.map(p => p.name).join(', ')}; agent settings ${AGENT_ENV_PARAMS.join(', ')}; AWS_ENDPOINT_URL[_<SERVICE>]`

const paramError = (message: string, remedy = 'see bootstrap-agent render-user-data --help'): ConfigError =>
  new ConfigError(message, remedy, 'USER_DATA_PARAM_INVALID')

/** `--param key=value` flags to a map; a repeated key is an error rather than a silent override. */
export const parseParamFlags = (flags: readonly string[]): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const f of flags) {
    const i = f.indexOf('=')
    const key = i > 0 ? f.slice(0, i) : ''
    if (!/^[A-Za-z][A-Za-z0-9_-]*$/.test(key)) throw paramError(`--param ${quote(f)} is not valid: expected key=value`)
    if (key in out) throw paramError(`--param ${key} is given twice`)
    out[key] = f.slice(i + 1)
  }
  return out
}

/** A word the shell reads back as exactly `v`: single quotes, with each ' written as '\''. */
export const shellQuote = (v: string): string => `'${v.replaceAll("'", "'\\''")}'`

/** One agent.env value in the form config/agent-env.ts and systemd's EnvironmentFile= both read back
 * unchanged: single quotes (no escapes at all) unless the value has one, else double quotes with
 * \ " $ ` escaped. Values are single lines; the caller refuses line breaks. */
export const agentEnvValue = (v: string): string =>
  v.includes("'") ? `"${v.replace(/["\\$`]/g, c => `\\${c}`)}"` : `'${v}'`

export const AGENT_ENV_HEADER = '# bootstrap-agent agent.env, written by user-data (bootstrap-agent render-user-data): configuration only, never secrets'

export const formatAgentEnv = (values: Readonly<Record<string, string>>): string =>
  [AGENT_ENV_HEADER, ...Object.keys(values).sort().map(k => `${k}=${agentEnvValue(values[k] ?? '')}`)].join('\n')

const checkValue = (name: string, v: string): void => {
  if (v === '') throw paramError(`--param ${name} is empty`, `give it a value, or leave ${name} out`)
  if (/[\r\n\0]/.test(v)) throw paramError(`--param ${name} = ${quote(v)} contains a line break or NUL: agent.env and the script take one line per value`)
  if (v.length > 2048) throw paramError(`--param ${name} is ${v.length} characters long: at most 2048`)
  for (const [re, what] of SECRET_VALUE_SHAPES) {
    // the value itself is not quoted: it may be the very secret we refuse to print
    if (re.test(v)) throw paramError(`--param ${name} looks like it holds ${what}; user-data must never carry a secret (any process on the instance can read it)`, 'store it in Secrets Manager or Parameter Store and pass only its name')
  }
}

/** Runs the agent's own settings parser over the agent.env values, with stand-in tags, so a bad
 * value fails here rather than at boot. */
const checkAgentSettings = (agentEnv: Readonly<Record<string, string>>): void => {
  const key = (env: string, dflt: string) => agentEnv[env] ?? dflt
  const tags = {
    [key('BOOTSTRAP_TAG_KEY_SERVICE', 'Service')]: 'service',
    [key('BOOTSTRAP_TAG_KEY_ENVIRONMENT', 'Environment')]: 'environment',
    [key('BOOTSTRAP_TAG_KEY_REPOSITORY', 'Repository')]: 'https://git.example.invalid/org/repo.git',
    [key('BOOTSTRAP_TAG_KEY_BRANCH', 'Branch')]: 'main',
  }
  try {
    resolveSettings({ flags: {}, env: {}, agentEnv, tags, mode: 'aws' })
  } catch (e) {
    throw isAgentError(e) ? paramError(`--param: ${e.message}`, e.remedy) : e
  }
}

export interface UserDataParams {
  /** template parameters by name (artifact-url, ...) */
  template: Record<string, string>
  /** agent.env entries, AWS_REGION included */
  agentEnv: Record<string, string>
  nodeInstall: NodeInstallMethod
}

export const validateParams = (params: Readonly<Record<string, string>>): UserDataParams => {
  const template: Record<string, string> = {}
  const agentEnv: Record<string, string> = {}
  for (const [name, value] of Object.entries(params)) {
    const tp = TEMPLATE_PARAMS.find(p => p.name === name)
    if (tp === undefined && !AGENT_ENV_PARAMS.includes(name) && !ENDPOINT_RE.test(name)) {
      const why = NOT_IN_AGENT_ENV[name]
      if (why !== undefined) throw paramError(`--param ${name} does not belong in user-data: ${why}`)
      if (SECRET_NAME_RE.test(name)) {
        throw paramError(`--param ${name} looks like a secret; user-data must never carry one (any process on the instance can read it)`, 'store it in Secrets Manager or Parameter Store; the service gets it through BOOTSTRAP_SECRET_IDS / BOOTSTRAP_PARAMETER_PATHS')
      }
      throw paramError(`unknown --param ${quote(name)}: allowed are ${allowedList()}`)
    }
    checkValue(name, value)
    if (tp) {
      const err = tp.check(value)
      if (err) throw paramError(`--param ${name} = ${quote(value)} is not valid: ${err}`)
      template[name] = value
    } else {
      if (ENDPOINT_RE.test(name) && !/^https?:\/\/[^\s@/]+(\/\S*)?$/.test(value)) throw paramError(`--param ${name} = ${quote(value)} is not valid: expected an http(s) endpoint URL`)
      agentEnv[name] = value
    }
  }
  const missing = REQUIRED.filter(n => !(n in template))
  const method = NODE_INSTALL_METHODS.find(m => m === template['node-install'])
  if (method === 'ubuntu') missing.push(...['node-url', 'node-sha256'].filter(n => !(n in template)))
  if (missing.length || method === undefined) {
    throw paramError(`missing --param ${missing.join(', ')}: required are ${REQUIRED.join(', ')} (and node-url, node-sha256 with node-install=ubuntu)`)
  }
  for (const [name, only] of Object.entries(ONLY_FOR)) {
    if (name in template && method !== only) throw paramError(`--param ${name} applies only to node-install=${only}, not ${method}`)
  }
  agentEnv['AWS_REGION'] = template['region'] ?? ''
  checkAgentSettings(agentEnv)
  return { template, agentEnv, nodeInstall: method }
}

/** The unit without its comment and blank lines: its documentation is most of its size, and
 * user-data has 16 KB. systemd reads only whole-line comments (# or ;), so nothing else changes. */
export const compactUnit = (unit: string, name = 'bootstrap-agent.service'): string =>
  [
    `# ${name}, installed by user-data; the commented original is systemd/${name} in the agent repository`,
    ...unit.split('\n').filter(l => l.trim() !== '' && !/^\s*[#;]/.test(l)),
  ].join('\n')

/** The body of a quoted heredoc must not contain its delimiter as a line of its own. */
const heredocBody = (what: string, text: string, delimiter: string): string => {
  const body = text.replace(/\n+$/, '')
  if (body.split('\n').some(l => l === delimiter)) throw new ConfigError(`${what} contains a line "${delimiter}", which would end its heredoc in the script`, `remove that line from ${what}`, 'USER_DATA_INVALID')
  if (body.includes('\0')) throw new ConfigError(`${what} contains a NUL byte`, `fix ${what}`, 'USER_DATA_INVALID')
  return body
}

export interface RenderInput {
  templateName: string
  templateText: string
  params: Readonly<Record<string, string>>
  /** content of systemd/bootstrap-agent.service */
  unit: string
  /** content of systemd/bootstrap-agent-watch.service */
  watchUnit: string
  agentVersion: string
}

export interface RenderedUserData {
  text: string
  bytes: number
  /** agent.env exactly as the script writes it */
  agentEnv: string
}

export const renderUserData = (input: RenderInput): RenderedUserData => {
  const p = validateParams(input.params)
  const t = p.template
  // the script's NODE_MAJOR is also the oldest Node it accepts: 22+ where it installs Node (design
  // section 7); a preinstalled Node only needs to run the agent (engines: >= 20.6)
  const nodeMajor = p.nodeInstall === 'al2023' ? t['node-major'] ?? '22' : p.nodeInstall === 'ubuntu' ? '22' : '20'
  const agentEnv = formatAgentEnv(p.agentEnv)
  const values: Record<string, string> = {
    rendered_by: `bootstrap-agent ${input.agentVersion}, template ${input.templateName}`,
    artifact_url: shellQuote(t['artifact-url'] ?? ''),
    artifact_sha256: shellQuote(t['artifact-sha256'] ?? ''),
    region: shellQuote(t['region'] ?? ''),
    node_install: shellQuote(p.nodeInstall),
    node_major: shellQuote(nodeMajor),
    node_url: shellQuote(t['node-url'] ?? ''),
    node_sha256: shellQuote(t['node-sha256'] ?? ''),
    agent_env: heredocBody('agent.env', agentEnv, 'AGENT_ENV_EOF'),
    unit: heredocBody('the systemd unit', compactUnit(input.unit), 'UNIT_EOF'),
    watch_unit: heredocBody('the watch systemd unit', compactUnit(input.watchUnit, 'bootstrap-agent-watch.service'), 'WATCH_UNIT_EOF'),
  }
  // one pass: text inserted for a placeholder is never scanned for placeholders again
  const text = input.templateText.replace(/\{\{([^{}]*)\}\}/g, (whole, name: string) => {
    const v = values[name]
    if (v === undefined) throw new ConfigError(`template ${input.templateName} uses an unknown placeholder ${whole}`, `use one of ${Object.keys(values).map(k => `{{${k}}}`).join(', ')}`, 'USER_DATA_TEMPLATE_INVALID')
    return v
  })
  if (!text.startsWith('#!')) throw new ConfigError(`template ${input.templateName} does not start with #!: cloud-init would not run it as a script`, 'start the template with #!/bin/bash', 'USER_DATA_TEMPLATE_INVALID')
  const bytes = Buffer.byteLength(text, 'utf8')
  if (bytes > USER_DATA_MAX_BYTES) {
    throw new ConfigError(`the rendered user-data is ${bytes} bytes: EC2 takes at most ${USER_DATA_MAX_BYTES}`, 'shorten the template or the systemd unit (comments count too)', 'USER_DATA_TOO_LARGE')
  }
  return { text, bytes, agentEnv: `${agentEnv}\n` }
}

/** For --help: one line per parameter. */
export const paramHelp = (): string =>
  [
    ...TEMPLATE_PARAMS.map(p => `  ${p.name.padEnd(20)} ${REQUIRED.includes(p.name) ? '(required) ' : ''}${p.describe}`),
    `  ${'BOOTSTRAP_*'.padEnd(20)} agent settings written into agent.env: ${AGENT_ENV_PARAMS.join(', ')}`,
    `  ${'AWS_ENDPOINT_URL*'.padEnd(20)} SDK endpoint overrides (VPC endpoints), written into agent.env`,
  ].join('\n')
