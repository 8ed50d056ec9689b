/**
 * Command line: `bootstrap-agent <command> [flags]`. node:util parseArgs, strict, so a mistyped
 * flag is an error (exit 2) rather than silently ignored. Help text is built from the same
 * option table Settings uses.
 */
import { parseArgs } from 'node:util'
import { ConfigError } from '../core/errors.js'
import { OPTIONS } from './settings.js'
import { paramHelp } from '../operator/user-data.js'

export const COMMANDS = ['run', 'plan', 'status', 'watch', 'manifest-schema', 'render-user-data', 'rollout', 'history', 'fleet', 'help', 'version'] as const
export type Command = (typeof COMMANDS)[number]

export interface ParsedArgs {
  command: Command
  flags: Record<string, string | boolean | undefined>
  tags: string[]
  help: boolean
  /** the arguments of a command that parses its own flags (render-user-data) */
  rest?: string[]
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

/** flags only `rollout` takes (commands/rollout.ts refuses the shared ones it does not use) */
const ROLLOUT = {
  'max-concurrency': { type: 'string' },
  'max-errors': { type: 'string' },
  timeout: { type: 'string' },
  document: { type: 'string' },
} as const

/** flags only `history` takes */
const HISTORY = {
  since: { type: 'string' },
  instance: { type: 'string' },
  run: { type: 'string' },
} as const

export const parseCli = (argv: readonly string[]): ParsedArgs => {
  const first = argv[0]
  if (first === undefined || first === '--help' || first === '-h') return { command: 'help', flags: {}, tags: [], help: false }
  if (first === '--version' || first === '-v') return { command: 'version', flags: {}, tags: [], help: false }
  const command = COMMANDS.find(c => c === first)
  if (!command) {
    throw new ConfigError(`unknown command ${JSON.stringify(first)}: expected one of ${COMMANDS.join(', ')}`, 'run bootstrap-agent --help')
  }
  if (command === 'render-user-data') {
    const rest = argv.slice(1)
    return { command, flags: {}, tags: [], help: rest.includes('--help') || rest.includes('-h'), rest }
  }
  let parsed
  try {
    parsed = parseArgs({ args: argv.slice(1), options: { ...COMMON, ...settingsFlags, ...(command === 'rollout' ? ROLLOUT : {}), ...(command === 'history' ? HISTORY : {}) }, strict: true, allowPositionals: false })
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
  status            the last run (table on a TTY, --json for machines), and what watch saw and did
  watch             long-running (bootstrap-agent-watch.service): polls IMDS; on termination or a spot notice, drains and completes the terminating hook
  manifest-schema   print the JSON Schema of the repository manifest (bootstrap-agent.json)
  render-user-data  render the launch template's user-data script (installs and starts the agent)
  rollout           for operators: re-bootstrap a service's instances over SSM, in batches, within an error budget
  history           for operators: the runs of a service from the run reports in CloudWatch Logs, instances alive or gone
  fleet             for operators: a service's instances now, each one's last run and the commit it serves (drift)
  version           print the version (also --version)

Run "bootstrap-agent <command> --help" for the flags of a command.
Exit codes: 0 success, 1 failed (previous good release left serving, or not started), 2 bad configuration or input (nothing changed), 3 another run holds the lock.`,
  run: `Usage: bootstrap-agent run [--local] [--tag Key=Value ...] [--reason boot|ssm|manual|warm-pool] [--json] [settings flags]

Runs the whole pipeline. With --local, no AWS: tags come from --tag, secrets from --secrets-file,
and everything lives under --root (default ./.bootstrap-local). Re-running converges: an unchanged
commit and unchanged secrets redeploy nothing.

  --local                      local mode (no AWS); also BOOTSTRAP_LOCAL=1
  --tag Key=Value              instance tag (local mode), repeatable
  --reason boot|ssm|manual|warm-pool
                               why this run happens (logged; warm-pool: started by watch when a
                               Warmed:Running instance goes InService)
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
and whether a run is in progress (lock holder) or was interrupted; then, from watch.json, what
watch saw (since, last poll, target lifecycle state, spot notice) and the drain it ran.`,
  watch: `Usage: bootstrap-agent watch [--root DIR] [--json] [--watch-interval S] [--pre-stop-timeout S] [settings flags]

Runs until SIGTERM (bootstrap-agent-watch.service, Restart=on-failure). Every --watch-interval
seconds it reads autoscaling/target-lifecycle-state and spot/instance-action from IMDSv2 (one
session token, renewed before it expires; backoff up to 30 s while IMDS does not answer):
  Terminated / Warmed:Terminated   drain, then complete the terminating lifecycle hook (CONTINUE),
                                   heartbeating while the drain runs
  spot instance-action             the same drain (within the two-minute notice); the hook is
                                   completed once the target state says Terminated, without a
                                   second drain
  Warmed:* -> InService            run --reason warm-pool (a Warmed:Running pool has no boot)
Drain (once per instance lifetime): stop a run in progress, the manifest's preStop command (as the
service user, with the service environment, --pre-stop-timeout), pm2 stop (SIGINT, then SIGKILL
after killTimeoutMs), fsync of the logs. A failing step still completes the hook. State in
<root>/var/lib/bootstrap-agent/watch.json; see bootstrap-agent status. Only AWS mode.

  --watch-interval S     seconds between polls (1-60) [5]
  --pre-stop-timeout S   seconds for the preStop command (1-600) [30]
  --imds-token-ttl S     IMDSv2 token lifetime (1-21600) [21600]
  --heartbeat-interval S lifecycle heartbeats while draining; 0 derives it from the hook [0]
Other settings flags (--service-user, --manifest, --log-level ...) as for run; the service is the one
the last run deployed (state.json) unless --service names it.`,
  'manifest-schema': `Usage: bootstrap-agent manifest-schema

Prints the JSON Schema of bootstrap-agent.json, the manifest an app repository may hold at its root.`,
  'render-user-data': `Usage: bootstrap-agent render-user-data --template NAME --param key=value ... [--out FILE] [--unit-file FILE] [--watch-unit-file FILE]

Renders user-data/templates/NAME.sh.tpl (template: bootstrap) into a launch template's user-data:
a bash script that downloads the release artifact (npm run package), checks its sha256, installs
Node if needed and the agent under /opt/bootstrap-agent/<version>, writes
/etc/bootstrap-agent/agent.env and the systemd units (--unit-file, default
systemd/bootstrap-agent.service; --watch-unit-file, default systemd/bootstrap-agent-watch.service),
and starts bootstrap-agent.service and bootstrap-agent-watch.service. Writes FILE, or stdout;
prints the size (at most 16384 bytes) on stderr. Unknown, missing or secret-looking parameters
are refused (exit 2): user-data is readable by every process on the instance.

Parameters:
${paramHelp()}`,
  rollout: `Usage: bootstrap-agent rollout --service S --environment E [--max-concurrency N|P%] [--max-errors N|P%]
                               [--branch B] [--dry-run] [--timeout SEC] [--document NAME] [--json]

For operators, with AWS credentials (not on the instances). Finds the running instances tagged with
the service and the environment (ec2:DescribeInstances), sends them the SSM document of
ssm/rebootstrap.json (each runs "bootstrap-agent run --reason ssm"), a batch of --max-concurrency
instances at a time, waits for the batch, and stops sending once more than --max-errors instances
failed. Prints one row per instance (instance, SSM status, outcome, commit, duration): a table on a
TTY, JSON lines otherwise (then a summary line).

  --service S              the Service tag value (required)
  --environment E          the Environment tag value (required)
  --max-concurrency N|P%   instances per batch, or a percentage of them [1]
  --max-errors N|P%        failed instances tolerated before it stops sending [0]
  --branch B               branch override for this run (the document's branch parameter)
  --dry-run                the instances run "plan" instead: nothing changes on them
  --timeout SEC            execution timeout per instance (the document's executionTimeout) [2700]
  --document NAME          SSM document name or ARN [bootstrap-agent-rebootstrap]
  --tag-key-service K      tag key of the service [Service] (also BOOTSTRAP_TAG_KEY_SERVICE)
  --tag-key-environment K  tag key of the environment [Environment] (also BOOTSTRAP_TAG_KEY_ENVIRONMENT)
  --json                   JSON lines even on a TTY

AWS: region from AWS_REGION, credentials from the standard chain; the actions needed are in
iam/operator-policy.json. The instances need the AmazonSSMManagedInstanceCore policy (SSM agent).
Exit codes: 0 sent to every instance and failures within --max-errors; 1 error budget exceeded
(or an AWS error); 2 bad input or no matching instance (nothing sent).`,
  history: `Usage: bootstrap-agent history --service S --environment E [--since 24h] [--instance i-… [--run ID]] [--json]
                               [--report-log-group NAME]

For operators, with AWS credentials (not on the instances). Reads the run reports the instances
wrote to CloudWatch Logs (logs:FilterLogEvents, every page): one row per run and per drain, newest
first, across every instance of the service, alive or terminated: time, instance, run id, reason,
commit, outcome, failed phase, error code. A table on a TTY, JSON lines otherwise (then a summary).

  --service S              the service (required)
  --environment E          the environment (required)
  --since T                how far back: 30m, 24h, 7d, or an ISO 8601 time [24h]
  --instance i-…           print one run's whole report: the run record, its phases, the error, what
                           serves after it, and the evidence (the failing step's output, the
                           service's log tail); the newest of that instance since --since
  --run ID                 with --instance: that run (its id, or the first characters of it)
  --report-log-group NAME  the group the instances write to; {environment} and {service} are replaced
                           [BOOTSTRAP_REPORT_LOG_GROUP, else /bootstrap-agent/{environment}/{service}]
  --json                   JSON even on a TTY

AWS: region from AWS_REGION, credentials from the standard chain; the actions are in
iam/operator-policy.json. Exit codes: 0 done (also when no run is found), 1 an AWS error,
2 bad input, or no such group or run.`,
  fleet: `Usage: bootstrap-agent fleet --service S --environment E [--json] [--report-log-group NAME]

For operators, with AWS credentials. The instances tagged with the service and the environment now
(ec2:DescribeInstances, every state but terminated), their Auto Scaling group, lifecycle state and
health (autoscaling:DescribeAutoScalingInstances), and each one's last run from the run reports
(logs:GetLogEvents): when, why, outcome, commit, and the commit it serves after it. The last line
says whether every instance serves the same commit, or names the commits (drift).

  --service S / --environment E      required
  --report-log-group NAME            as for history
  --tag-key-service K / --tag-key-environment K   tag keys [Service] [Environment]
  --json                             JSON lines (one per instance, then a summary) even on a TTY

Exit codes: 0 done, 1 an AWS error, 2 bad input or no such group.`,
  version: 'Usage: bootstrap-agent --version',
}

export const helpFor = (c: Command): string => HELP[c]
