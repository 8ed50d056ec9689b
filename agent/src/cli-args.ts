/**
 * Command line: `bootstrap-agent <command> [flags]`. node:util parseArgs, strict, so a mistyped
 * flag is an error (exit 2) rather than silently ignored. Help text is built from the same
 * option table Settings uses.
 */
import { parseArgs } from 'node:util'
import { ConfigError } from './errors.js'
import { OPTIONS } from './settings.js'

export const COMMANDS = ['run', 'plan', 'status', 'manifest-schema', 'help', 'version'] as const
export type Command = (typeof COMMANDS)[number]

export interface ParsedArgs {
  command: Command
  flags: Record<string, string | boolean | undefined>
  tags: string[]
  help: boolean
}

const COMMON = {
  local: { type: 'boolean' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  tag: { type: 'string', multiple: true },
  reason: { type: 'string' },
  'dry-run': { type: 'boolean' },
} as const

const settingsFlags = Object.fromEntries(OPTIONS.map(o => [o.flag, { type: 'string' as const }]))

export const parseCli = (argv: readonly string[]): ParsedArgs => {
  const first = argv[0]
  if (first === undefined || first === '--help' || first === '-h') return { command: 'help', flags: {}, tags: [], help: false }
  if (first === '--version' || first === '-v') return { command: 'version', flags: {}, tags: [], help: false }
  const command = COMMANDS.find(c => c === first)
  if (!command) {
    throw new ConfigError(`unknown command ${JSON.stringify(first)}: expected one of ${COMMANDS.join(', ')}`, 'run bootstrap-agent --help')
  }
  let parsed
  try {
    parsed = parseArgs({ args: argv.slice(1), options: { ...COMMON, ...settingsFlags }, strict: true, allowPositionals: false })
  } catch (e) {
    throw new ConfigError(`${command}: ${e instanceof Error ? e.message : String(e)}`, `run bootstrap-agent ${command} --help`, 'CLI_INVALID')
  }
  const { tag, help, ...rest } = parsed.values
  const flags: Record<string, string | boolean | undefined> = {}
  for (const [k, v] of Object.entries(rest)) if (typeof v === 'string' || typeof v === 'boolean') flags[k] = v
  return { command, flags, tags: tag ?? [], help: help === true }
}

const optionHelp = () =>
  OPTIONS.map(o => `  --${o.flag.padEnd(24)} ${o.env.padEnd(32)} ${o.describe}${o.default ? ` [${o.default}]` : ''}`).join('\n')

const HELP: Record<Command, string> = {
  help: `bootstrap-agent: turns a fresh EC2 instance into a healthy member of its Auto Scaling Group.

Usage: bootstrap-agent <command> [flags]

Commands:
  run               identify -> resolve -> fetch -> secrets -> install -> build -> switch -> start -> verify -> complete -> cleanup
  plan              what run would do (branch, commit, secret names, PM2 app, phases); changes nothing
  status            the last run (table on a TTY, --json for machines)
  manifest-schema   print the JSON Schema of the repository manifest (bootstrap-agent.json)
  version           print the version (also --version)

Run "bootstrap-agent <command> --help" for the flags of a command.
Exit codes: 0 success, 1 failed (previous good release left serving, or not started), 2 bad configuration or input (nothing changed), 3 another run holds the lock.`,
  run: `Usage: bootstrap-agent run [--local] [--tag Key=Value ...] [--reason boot|ssm|manual] [--json] [settings flags]

Runs the whole pipeline. With --local, no AWS: tags come from --tag, secrets from --secrets-file,
and everything lives under --root (default ./.bootstrap-local). Re-running converges: an unchanged
commit and unchanged secrets redeploy nothing.

  --local                      local mode (no AWS); also BOOTSTRAP_LOCAL=1
  --tag Key=Value              instance tag (local mode), repeatable
  --reason boot|ssm|manual     why this run happens (logged; boot completes the lifecycle hook)
  --dry-run                    same as the plan command
  --json                       JSON lines on stdout even on a TTY

Settings (flag, environment variable, description [default]); precedence: flag > environment > agent.env > tag > default:
${optionHelp()}`,
  plan: `Usage: bootstrap-agent plan [--local] [--tag Key=Value ...] [--json] [settings flags]

Resolves settings, asks the remote for the branch's commit (git ls-remote), reads the manifest from a
shallow clone in a temporary directory, and prints what run would do. Writes nothing outside a
temporary directory and reads no secret value (a private repository's commit shows as unknown).

Settings flags are those of "run" (see bootstrap-agent run --help).`,
  status: `Usage: bootstrap-agent status [--root DIR] [--local] [--json]

Prints the last run from state.json: outcome, service, branch, commit, release, phases and timings,
and whether a run is in progress (lock holder) or was interrupted.`,
  'manifest-schema': `Usage: bootstrap-agent manifest-schema

Prints the JSON Schema of bootstrap-agent.json, the manifest an app repository may hold at its root.`,
  version: 'Usage: bootstrap-agent --version',
}

export const helpFor = (c: Command): string => HELP[c]
