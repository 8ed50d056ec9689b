/**
 * `bootstrap-agent rollout`: an operator's command (laptop or CI runner with AWS credentials, not
 * an instance). Validates every input before any AWS call (exit 2), finds the instances, runs the
 * rollout (operator/rollout.ts) and prints one row per instance: a table on a TTY, JSON lines otherwise.
 * Exit 0 when every instance was sent to and the failures stayed within --max-errors, else 1.
 */
import { createEc2InstancesApi, createSsmCommandsApi } from '../aws/ssm-commands.js'
import type { ParsedArgs } from '../config/cli-args.js'
import { ConfigError, ExitCode } from '../core/errors.js'
import type { Io } from './io.js'
import { checkBranchName, quote } from '../config/names.js'
import { flagText, operatorRegion, parseOperatorTarget } from './operator-args.js'
import {
  DEFAULT_DOCUMENT, findTargets, formatRolloutTable, runRollout,
  type Limit, type RolloutDeps, type RolloutOptions,
} from '../operator/rollout.js'

/** the flags rollout reads; any other flag of the shared parser is refused, not ignored */
const ACCEPTED = new Set([
  'service', 'environment', 'branch', 'dry-run', 'json', 'max-concurrency', 'max-errors', 'timeout', 'document',
  'tag-key-service', 'tag-key-environment',
])

/**
 * What the document's `branch` parameter admits (its allowedPattern, ssm/rebootstrap.json; a test
 * keeps the two equal): checked here too, so a refused branch is exit 2 before anything is sent.
 */
export const SSM_BRANCH_PATTERN = '^([A-Za-z0-9][A-Za-z0-9_-]*([./][A-Za-z0-9_-]+)*)?$'
/** the document's executionTimeout is at most 172800 s (48 h), like AWS-RunShellScript's */
const TIMEOUT_RANGE = [60, 172_800] as const
const DEFAULT_TIMEOUT_SEC = 2_700
const DOCUMENT = /^(arn:aws[a-z-]*:ssm:[a-z0-9-]+:\d{12}:document\/)?[A-Za-z0-9_.-]{3,128}$/

const bad = (message: string, remedy: string): never => {
  throw new ConfigError(message, remedy)
}

const parseLimit = (flag: string, raw: string | undefined, fallback: Limit, min: number): Limit => {
  if (raw === undefined) return fallback
  const m = /^(\d{1,6})(%?)$/.exec(raw)
  const value = Number(m?.[1])
  const limit: Limit = { kind: m?.[2] ? 'percent' : 'count', value }
  if (!m || value < min || (limit.kind === 'percent' && value > 100)) {
    bad(`--${flag} ${quote(raw)} is not valid: expected a whole number of instances (at least ${min}) or a percentage of them (${min}% to 100%), e.g. "2" or "25%"`, `fix --${flag}`)
  }
  return limit
}

/** Flags and environment -> validated options; every error quotes the value and the expected form. */
export const parseRolloutOptions = (args: ParsedArgs, env: NodeJS.ProcessEnv): RolloutOptions => {
  const target = parseOperatorTarget('rollout', args, env, ACCEPTED)
  const branch = flagText(args.flags, 'branch')
  if (branch !== undefined) {
    const gitError = checkBranchName(branch)
    if (gitError) bad(`--branch ${gitError}`, 'fix --branch')
    if (!new RegExp(SSM_BRANCH_PATTERN).test(branch)) {
      bad(
        `--branch ${quote(branch)} is refused by the SSM document: expected letters, digits, '_' and '-', in parts joined by single '.' or '/'`,
        'use a branch name of that form (push the commit under such a name if needed)',
      )
    }
  }
  const timeoutRaw = flagText(args.flags, 'timeout')
  const timeoutSec = timeoutRaw === undefined ? DEFAULT_TIMEOUT_SEC : /^\d{1,6}$/.test(timeoutRaw) ? Number(timeoutRaw) : NaN
  if (!(timeoutSec >= TIMEOUT_RANGE[0] && timeoutSec <= TIMEOUT_RANGE[1])) {
    bad(`--timeout ${quote(timeoutRaw ?? '')} is not valid: expected whole seconds from ${TIMEOUT_RANGE[0]} to ${TIMEOUT_RANGE[1]}`, 'fix --timeout')
  }
  const document = flagText(args.flags, 'document') ?? DEFAULT_DOCUMENT
  if (!DOCUMENT.test(document)) bad(`--document ${quote(document)} is not an SSM document name or ARN`, 'fix --document')
  return {
    ...target,
    branch,
    dryRun: args.flags['dry-run'] === true,
    maxConcurrency: parseLimit('max-concurrency', flagText(args.flags, 'max-concurrency'), { kind: 'count', value: 1 }, 1),
    maxErrors: parseLimit('max-errors', flagText(args.flags, 'max-errors'), { kind: 'count', value: 0 }, 0),
    timeoutSec,
    document,
  }
}

export const rolloutCommand = async (args: ParsedArgs, env: NodeJS.ProcessEnv, io: Io): Promise<number> => {
  const o = parseRolloutOptions(args, env)
  const region = operatorRegion(env)
  const progress = (line: string) => void io.stderr.write(`rollout: ${line}\n`)
  const deps: RolloutDeps = { ec2: createEc2InstancesApi(region), ssm: createSsmCommandsApi(region), onProgress: progress }
  const what = `${o.service} (${o.environment})`
  const targets = await findTargets(deps.ec2, o)
  if (targets.length === 0) {
    throw new ConfigError(
      `no running instance is tagged ${o.tagKeys.service}=${o.service} and ${o.tagKeys.environment}=${o.environment} in ${region}`,
      'check --service, --environment, AWS_REGION and the tag keys (--tag-key-service, --tag-key-environment)',
      'ROLLOUT_NO_INSTANCES',
    )
  }
  progress(`${what}: ${targets.length} instance(s), document ${o.document}${o.branch ? `, branch ${o.branch}` : ''}${o.dryRun ? ', dry run (plan only)' : ''}`)
  const report = await runRollout(deps, o, targets)
  if (args.flags['json'] === true || io.stdout.isTTY !== true) {
    for (const row of report.rows) io.stdout.write(`${JSON.stringify(row)}\n`)
    // the rows are the lines above; undefined keys are left out by JSON.stringify
    io.stdout.write(`${JSON.stringify({ summary: { service: o.service, environment: o.environment, dryRun: o.dryRun, ...report, rows: undefined } })}\n`)
  } else {
    io.stdout.write(formatRolloutTable(report, `rollout of ${what}`))
  }
  return report.withinBudget ? ExitCode.ok : ExitCode.failed
}
