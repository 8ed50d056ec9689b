/**
 * A rollout: the re-bootstrap document (ssm/rebootstrap.json) sent to every running instance of
 * one service and environment, one batch of `maxConcurrency` instances at a time. Each batch is
 * waited for until every invocation is terminal; once more than `maxErrors` instances failed, no
 * further batch is sent (SSM's own MaxErrors has the same meaning, but we batch ourselves so that
 * the budget spans the whole rollout and every row carries the agent's own result).
 *
 * Each instance's row comes from the document's last output line (see parseResultLine) and, when
 * an endpoint returns no output (moto), from SSM's invocation status alone: commit "unknown".
 */
import type { GetCommandInvocationResult } from '@aws-sdk/client-ssm'
import { classifyAwsError, withRetry, type AwsCall, type RetryOptions } from '../aws/retry.js'
import type { Ec2InstancesApi, SsmCommandsApi } from '../aws/ssm-commands.js'
import { messageOf } from '../core/errors.js'
import { formatTable } from '../core/table.js'
import { findInstances, forOperator } from './instances.js'

export const DEFAULT_DOCUMENT = 'bootstrap-agent-rebootstrap'
/** SendCommand TimeoutSeconds: how long SSM keeps trying to reach an instance (agent offline) */
export const DELIVERY_TIMEOUT_SEC = 600
/** SSM accepts at most 50 InstanceIds per SendCommand */
const IDS_PER_SEND = 50
/** the first key of the document's result line */
export const RESULT_MARK = 'bootstrap-agent-rebootstrap'
/** GetCommandInvocation statuses that are not final yet */
const IN_FLIGHT = new Set(['Pending', 'InProgress', 'Delayed', 'Cancelling'])

export type Limit = { kind: 'count'; value: number } | { kind: 'percent'; value: number }

export interface RolloutOptions {
  service: string
  environment: string
  tagKeys: { service: string; environment: string }
  branch: string | undefined
  dryRun: boolean
  maxConcurrency: Limit
  maxErrors: Limit
  /** per instance: the document's executionTimeout */
  timeoutSec: number
  document: string
}

export interface RolloutDeps {
  ec2: Ec2InstancesApi
  ssm: SsmCommandsApi
  /** between two GetCommandInvocation rounds (5 s) */
  pollMs?: number
  sleep?: (ms: number) => Promise<void>
  now?: () => number
  retry?: RetryOptions
  onProgress?: (line: string) => void
}

export interface RolloutRow {
  instanceId: string
  /** SSM's invocation status, or ours: NotSent, SendFailed, PollFailed, WaitTimedOut */
  status: string
  /** the agent's outcome (success, rolled-back, planned, locked, ...) or, without a result line, the status */
  outcome: string
  commit: string
  release?: string
  durationMs?: number
  ok: boolean
  commandId?: string
  detail?: string
}

export interface RolloutReport {
  targets: string[]
  rows: RolloutRow[]
  concurrency: number
  maxErrors: number
  failures: number
  notSent: number
  withinBudget: boolean
  commandIds: string[]
}

export interface AgentResult {
  command: string
  exitCode: number
  outcome: string
  commit?: string
  release?: string
  durationMs?: number
}

const record = (v: unknown): Record<string, unknown> | undefined =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined
const text = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined)
const count = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined)

/**
 * The document's last line: {"result":"bootstrap-agent-rebootstrap","command":"run"|"plan",
 * "exitCode":N,"status"|"plan":<the agent's status --json / plan --json, or null>}.
 */
export const parseResultLine = (stdout: string): AgentResult | undefined => {
  const line = stdout.split('\n').reverse().find(l => l.startsWith(`{"result":"${RESULT_MARK}"`))
  if (line === undefined) return undefined
  let data: Record<string, unknown> | undefined
  try {
    data = record(JSON.parse(line))
  } catch {
    return undefined
  }
  const exitCode = count(data?.['exitCode'])
  const command = text(data?.['command'])
  if (!data || exitCode === undefined || command === undefined) return undefined
  const failed = { command, exitCode, outcome: `exit ${exitCode}` }
  if (command === 'plan') {
    const plan = record(data['plan'])
    if (exitCode !== 0 || !plan) return failed
    return { command, exitCode, outcome: 'planned', ...opt('commit', text(plan['commit'])), ...opt('release', text(record(plan['live'])?.['release'])) }
  }
  // exit 3: another run holds the lock, and state.json describes that run, not this one
  if (exitCode === 3) return { command, exitCode, outcome: 'locked' }
  const state = record(record(data['status'])?.['state'])
  const outcome = text(state?.['outcome'])
  // a run that failed before it wrote state.json (bad flags) leaves the previous run's there
  if (!state || outcome === undefined || count(state['exitCode']) !== exitCode) return failed
  return {
    command, exitCode, outcome,
    ...opt('commit', text(state['commit'])), ...opt('release', text(state['release'])), ...opt('durationMs', count(state['durationMs'])),
  }
}

const opt = <K extends string, V>(key: K, value: V | undefined): Partial<Record<K, V>> =>
  (value === undefined ? {} : { [key]: value }) as Partial<Record<K, V>>

/** SSM's ExecutionElapsedTime, ISO 8601 (PT1M2.5S) */
export const isoDurationMs = (iso: string | undefined): number | undefined => {
  const m = /^PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?$/.exec(iso ?? '')
  if (!m || iso === 'PT') return undefined
  return Math.round(((Number(m[1] ?? 0) * 60 + Number(m[2] ?? 0)) * 60 + Number(m[3] ?? 0)) * 1000)
}

/** the line that says why: the agent's own error line, else the last line on stderr */
const errorLine = (stderr: string | undefined): string | undefined => {
  const lines = (stderr ?? '').split('\n').map(l => l.trim()).filter(Boolean)
  const line = lines.find(l => l.startsWith('bootstrap-agent:')) ?? lines[lines.length - 1]
  return line === undefined ? undefined : line.slice(0, 300)
}

export const rowFromInvocation = (instanceId: string, commandId: string, inv: GetCommandInvocationResult): RolloutRow => {
  const status = inv.Status ?? 'Unknown'
  const result = parseResultLine(inv.StandardOutputContent ?? '')
  const ok = status === 'Success' && (result === undefined || result.exitCode === 0)
  const why = [inv.StatusDetails !== status ? inv.StatusDetails : undefined, ok ? undefined : errorLine(inv.StandardErrorContent)].filter(Boolean).join(': ')
  const durationMs = result?.durationMs ?? isoDurationMs(inv.ExecutionElapsedTime)
  return {
    instanceId, status, outcome: result?.outcome ?? status, commit: result?.commit ?? 'unknown',
    ...opt('release', result?.release), ...opt('durationMs', durationMs), ok, commandId, ...opt('detail', why || undefined),
  }
}

const failedRow = (instanceId: string, status: string, detail: string, commandId?: string): RolloutRow =>
  ({ instanceId, status, outcome: status, commit: 'unknown', ok: false, ...opt('commandId', commandId), detail })

export const resolveLimit = (l: Limit, total: number, min: number): number =>
  l.kind === 'count' ? l.value : Math.max(min, Math.floor((total * l.value) / 100))

/** Running instances tagged with the service and the environment, sorted by id. */
export const findTargets = async (ec2: Ec2InstancesApi, o: RolloutOptions, retry?: RetryOptions): Promise<string[]> =>
  (await findInstances(ec2, o, ['running'], retry)).map(i => i.instanceId)

export const runRollout = async (deps: RolloutDeps, o: RolloutOptions, targets: readonly string[]): Promise<RolloutReport> => {
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>(resolve => setTimeout(resolve, ms)))
  const now = deps.now ?? Date.now
  const pollMs = deps.pollMs ?? 5_000
  const concurrency = resolveLimit(o.maxConcurrency, targets.length, 1)
  const maxErrors = resolveLimit(o.maxErrors, targets.length, 0)
  const rows = new Map<string, RolloutRow>()
  const commandIds: string[] = []
  const batches = Math.ceil(targets.length / concurrency)
  const Parameters: Record<string, string[]> = {
    dryRun: [String(o.dryRun)],
    executionTimeout: [String(o.timeoutSec)],
    ...(o.branch === undefined ? {} : { branch: [o.branch] }),
  }

  /** SendCommand for one batch (50 ids a call); instance -> command id of what was sent */
  const send = async (batch: string[]): Promise<Map<string, string>> => {
    const sent = new Map<string, string>()
    for (let i = 0; i < batch.length; i += IDS_PER_SEND) {
      const InstanceIds = batch.slice(i, i + IDS_PER_SEND)
      // A retry after a timeout may send twice; the agent's lock and convergence make that harmless.
      try {
        const r = await withRetry({ service: 'ssm', action: 'SendCommand', resource: o.document }, () => deps.ssm.sendCommand({
          DocumentName: o.document,
          InstanceIds,
          Parameters,
          Comment: `bootstrap-agent rollout ${o.service}/${o.environment}${o.dryRun ? ' (dry run)' : ''}`.slice(0, 100),
          TimeoutSeconds: DELIVERY_TIMEOUT_SEC,
          // the whole batch at once and no stop inside it: the budget is ours, across batches
          MaxConcurrency: String(InstanceIds.length),
          MaxErrors: String(InstanceIds.length),
        }), deps.retry)
        const id = r.Command?.CommandId
        if (!id) throw new Error('SendCommand answered without a CommandId')
        commandIds.push(id)
        for (const instance of InstanceIds) sent.set(instance, id)
      } catch (e) {
        for (const instance of InstanceIds) rows.set(instance, failedRow(instance, 'SendFailed', messageOf(forOperator(e))))
      }
    }
    return sent
  }

  /** undefined while the invocation is in flight (or not visible yet, right after SendCommand) */
  const poll = async (instanceId: string, commandId: string): Promise<RolloutRow | undefined> => {
    const call: AwsCall = { service: 'ssm', action: 'GetCommandInvocation', resource: `${commandId} on ${instanceId}` }
    try {
      const inv = await withRetry(call, async () => {
        try {
          return await deps.ssm.getCommandInvocation({ CommandId: commandId, InstanceId: instanceId })
        } catch (e) {
          if (classifyAwsError(e).code === 'InvocationDoesNotExist') return undefined
          throw e
        }
      }, deps.retry)
      if (!inv || IN_FLIGHT.has(inv.Status ?? 'Pending')) return undefined
      return rowFromInvocation(instanceId, commandId, inv)
    } catch (e) {
      return failedRow(instanceId, 'PollFailed', messageOf(forOperator(e)), commandId)
    }
  }

  const wait = async (sent: Map<string, string>): Promise<void> => {
    // SSM ends the invocation itself after delivery + execution timeouts; this is the backstop
    const waitSec = DELIVERY_TIMEOUT_SEC + o.timeoutSec + 60
    const deadline = now() + waitSec * 1000
    let pending = [...sent.keys()]
    for (;;) {
      const still: string[] = []
      for (const id of pending) {
        const row = await poll(id, sent.get(id) ?? '')
        if (row) rows.set(id, row)
        else still.push(id)
      }
      pending = still
      if (pending.length === 0) return
      if (now() >= deadline) {
        for (const id of pending) rows.set(id, failedRow(id, 'WaitTimedOut', `no final status within ${waitSec} s; it may still be running on the instance`, sent.get(id)))
        return
      }
      await sleep(pollMs)
    }
  }

  const failures = () => [...rows.values()].filter(r => !r.ok).length
  let next = 0
  for (let n = 1; next < targets.length && failures() <= maxErrors; n++) {
    const batch = targets.slice(next, next + concurrency)
    next += batch.length
    deps.onProgress?.(`batch ${n}/${batches}: sending to ${batch.join(', ')}`)
    await wait(await send(batch))
    const done = batch.map(id => rows.get(id))
    const ok = done.filter(r => r?.ok).length
    deps.onProgress?.(`batch ${n}/${batches}: ${ok} ok, ${done.length - ok} failed (${failures()} failed so far, budget ${maxErrors})`)
  }
  const notSent = targets.slice(next)
  for (const id of notSent) rows.set(id, failedRow(id, 'NotSent', `not sent: more than ${maxErrors} instance(s) failed`))
  const failed = failures() - notSent.length
  return {
    targets: [...targets],
    rows: targets.map(id => rows.get(id) ?? failedRow(id, 'Unknown', 'internal: no row')),
    concurrency,
    maxErrors,
    failures: failed,
    notSent: notSent.length,
    withinBudget: failed <= maxErrors && notSent.length === 0,
    commandIds,
  }
}

const ms = (n: number | undefined) => (n === undefined ? '' : n >= 10_000 ? `${(n / 1000).toFixed(1)} s` : `${n} ms`)

/** The human table (TTY): one row per instance, then the budget line. */
export const formatRolloutTable = (r: RolloutReport, what: string): string => {
  const head = ['instance', 'status', 'outcome', 'commit', 'duration', 'detail']
  const body = r.rows.map(x => [x.instanceId, x.status, x.outcome, x.commit === 'unknown' ? x.commit : x.commit.slice(0, 12), ms(x.durationMs), x.detail ?? ''])
  const ok = r.rows.filter(x => x.ok).length
  const verdict = r.withinBudget ? 'within the error budget' : 'error budget exceeded'
  return [
    ...formatTable(head, body),
    '',
    `  ${what}: ${ok} of ${r.targets.length} succeeded, ${r.failures} failed, ${r.notSent} not sent (max errors ${r.maxErrors}): ${verdict}`,
    '',
  ].join('\n')
}
