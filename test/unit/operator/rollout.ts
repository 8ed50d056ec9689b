/**
 * The rollout's batching and error budget against fakes of our two narrow interfaces
 * (Ec2InstancesApi, SsmCommandsApi) and a fake clock: concurrency respected, the budget stops
 * further sends, a timeout counts as a failure; plus the pure parts (result line, limits, table).
 */
import t from 'tap'
import type { DescribeInstancesRequest, Instance } from '@aws-sdk/client-ec2'
import type { GetCommandInvocationResult, SendCommandRequest } from '@aws-sdk/client-ssm'
import type { Ec2InstancesApi, SsmCommandsApi } from '../../../agent/src/aws/ssm-commands.js'
import { parseCli } from '../../../agent/src/config/cli-args.js'
import { parseRolloutOptions } from '../../../agent/src/commands/rollout.js'
import { isAgentError } from '../../../agent/src/core/errors.js'
import {
  DEFAULT_DOCUMENT, DELIVERY_TIMEOUT_SEC, findTargets, formatRolloutTable, isoDurationMs, parseResultLine, resolveLimit, rowFromInvocation, runRollout,
  type RolloutDeps, type RolloutOptions,
} from '../../../agent/src/operator/rollout.js'
import { rejected, thrown } from '../../helpers/thrown.js'

const sdkError = (name: string, status = 400, message = `${name} happened`) =>
  Object.assign(new Error(message), { name, $fault: status >= 500 ? 'server' : 'client', $metadata: { httpStatusCode: status } })

const options = (over: Partial<RolloutOptions> = {}): RolloutOptions => ({
  service: 'auth', environment: 'stage', tagKeys: { service: 'Service', environment: 'Environment' },
  branch: undefined, dryRun: false, maxConcurrency: { kind: 'count', value: 1 }, maxErrors: { kind: 'count', value: 0 },
  timeoutSec: 600, document: DEFAULT_DOCUMENT, ...over,
})

/** What the document prints last, for a run that ended with `outcome` */
const runLine = (exitCode: number, state: Record<string, unknown> | null) =>
  JSON.stringify({ result: 'bootstrap-agent-rebootstrap', command: 'run', exitCode, status: state === null ? null : { state, runInProgress: null, interrupted: false } })

type Behaviour = 'ok' | 'fail' | 'rolled-back' | 'hang' | 'no-output'

/**
 * A fleet behind SSM: each instance answers InvocationDoesNotExist on its first poll, InProgress
 * on the next, then its final status. Records every SendCommand and the number of instances in
 * flight (sent, final status not yet read) at every moment.
 */
const fakeFleet = (behaviour: Record<string, Behaviour>) => {
  const sends: SendCommandRequest[] = []
  const polls = new Map<string, number>()
  const inFlight = new Set<string>()
  let maxInFlight = 0
  let commands = 0
  const ssm: SsmCommandsApi = {
    async sendCommand(input) {
      sends.push(input)
      for (const id of input.InstanceIds ?? []) inFlight.add(id)
      maxInFlight = Math.max(maxInFlight, inFlight.size)
      return { Command: { CommandId: `cmd-${++commands}` } }
    },
    async getCommandInvocation(input): Promise<GetCommandInvocationResult> {
      const id = input.InstanceId ?? ''
      const n = (polls.get(id) ?? 0) + 1
      polls.set(id, n)
      if (n === 1) throw sdkError('InvocationDoesNotExist')
      const b = behaviour[id] ?? 'ok'
      if (n === 2 || b === 'hang') return { InstanceId: id, CommandId: input.CommandId, Status: 'InProgress', StatusDetails: 'InProgress' }
      inFlight.delete(id)
      const commit = `${id.replace('i-', '')}`.padEnd(40, 'a')
      if (b === 'no-output') return { InstanceId: id, Status: 'Success', StatusDetails: 'Success', StandardOutputContent: '', ExecutionElapsedTime: 'PT5M' }
      if (b === 'ok') return { InstanceId: id, Status: 'Success', StatusDetails: 'Success', StandardOutputContent: `log line\n${runLine(0, { outcome: 'success', exitCode: 0, commit, release: `r-${id}`, durationMs: 4200 })}\n` }
      const outcome = b === 'fail' ? 'failed' : 'rolled-back'
      return {
        InstanceId: id, Status: 'Failed', StatusDetails: 'Failed', ResponseCode: 1,
        StandardOutputContent: `${runLine(1, { outcome, exitCode: 1, commit, durationMs: 9000 })}\n`,
        StandardErrorContent: `bootstrap-agent: ${outcome} [HEALTH_FAILED]: health check failed\n  what to do: look at the logs\n`,
      }
    },
  }
  return { ssm, sends, polls, maxInFlight: () => maxInFlight }
}

const clock = () => {
  let now = 0
  return { now: () => now, sleep: async (ms: number) => void (now += ms) }
}

const deps = (ssm: SsmCommandsApi, over: Partial<RolloutDeps> = {}): RolloutDeps & { progress: string[] } => {
  const progress: string[] = []
  const c = clock()
  const ec2: Ec2InstancesApi = { describeInstances: async () => ({}) }
  return { ec2, ssm, ...c, pollMs: 1000, retry: { baseMs: 1, capMs: 1 }, onProgress: l => progress.push(l), progress, ...over }
}

const ids = (n: number) => Array.from({ length: n }, (_, i) => `i-${String(i + 1).padStart(2, '0')}`)

t.test('all succeed: batches of max-concurrency, never more in flight, one row per instance', async t => {
  const fleet = fakeFleet({})
  const d = deps(fleet.ssm)
  const r = await runRollout(d, options({ maxConcurrency: { kind: 'count', value: 2 }, branch: 'release/1.2' }), ids(5))
  t.same(fleet.sends.map(s => s.InstanceIds), [['i-01', 'i-02'], ['i-03', 'i-04'], ['i-05']])
  t.equal(fleet.maxInFlight(), 2, 'never more than 2 instances in flight')
  t.same(fleet.sends[0]?.Parameters, { dryRun: ['false'], executionTimeout: ['600'], branch: ['release/1.2'] })
  t.equal(fleet.sends[0]?.DocumentName, DEFAULT_DOCUMENT)
  t.equal(fleet.sends[0]?.TimeoutSeconds, DELIVERY_TIMEOUT_SEC)
  t.match(fleet.sends[0]?.Comment, /^bootstrap-agent rollout auth\/stage$/)
  t.same(r.rows.map(x => [x.instanceId, x.status, x.outcome, x.ok, x.durationMs]), ids(5).map(id => [id, 'Success', 'success', true, 4200]))
  t.match(r.rows[0], { commit: /^01a+$/, release: 'r-i-01', commandId: 'cmd-1' })
  t.match(r, { failures: 0, notSent: 0, withinBudget: true, concurrency: 2, maxErrors: 0, commandIds: ['cmd-1', 'cmd-2', 'cmd-3'] })
  t.match(d.progress, [/^batch 1\/3: sending to i-01, i-02$/, /^batch 1\/3: 2 ok, 0 failed/])
})

t.test('the budget exceeded stops further sends; the rest is reported as not sent', async t => {
  const fleet = fakeFleet({ 'i-02': 'fail' })
  const r = await runRollout(deps(fleet.ssm), options({ maxConcurrency: { kind: 'count', value: 2 } }), ids(6))
  t.equal(fleet.sends.length, 1, 'one batch sent, then stopped')
  t.same(r.rows.map(x => [x.instanceId, x.status, x.ok]), [
    ['i-01', 'Success', true], ['i-02', 'Failed', false], ['i-03', 'NotSent', false], ['i-04', 'NotSent', false], ['i-05', 'NotSent', false], ['i-06', 'NotSent', false],
  ])
  t.match(r.rows[1], { outcome: 'failed', detail: 'bootstrap-agent: failed [HEALTH_FAILED]: health check failed' })
  t.match(r, { failures: 1, notSent: 4, withinBudget: false })
})

t.test('failures within the budget: every instance is sent to, the rollout passes', async t => {
  const fleet = fakeFleet({ 'i-01': 'rolled-back' })
  const r = await runRollout(deps(fleet.ssm), options({ maxErrors: { kind: 'count', value: 1 } }), ids(3))
  t.equal(fleet.sends.length, 3)
  t.match(r, { failures: 1, notSent: 0, withinBudget: true })
  t.equal(r.rows[0]?.outcome, 'rolled-back')
})

t.test('a second failure past a budget of one stops the rollout', async t => {
  const fleet = fakeFleet({ 'i-01': 'fail', 'i-02': 'fail' })
  const r = await runRollout(deps(fleet.ssm), options({ maxErrors: { kind: 'count', value: 1 } }), ids(4))
  t.equal(fleet.sends.length, 2)
  t.match(r, { failures: 2, notSent: 2, withinBudget: false })
})

t.test('an instance that never finishes counts as a failure once the wait runs out', async t => {
  const fleet = fakeFleet({ 'i-02': 'hang' })
  const d = deps(fleet.ssm)
  const r = await runRollout(d, options({ maxConcurrency: { kind: 'count', value: 2 }, timeoutSec: 60 }), ids(3))
  t.match(r.rows[1], { instanceId: 'i-02', status: 'WaitTimedOut', ok: false, commandId: 'cmd-1', detail: /no final status within 720 s/ })
  t.ok(d.now?.() !== undefined && (d.now?.() ?? 0) >= 720_000, 'waited (on the fake clock) until the deadline')
  t.equal(fleet.sends.length, 1, 'over budget: the third instance is not sent to')
  t.equal(r.rows[2]?.status, 'NotSent')
})

t.test('no output (an emulator): SSM status as outcome, commit unknown, its elapsed time', async t => {
  const fleet = fakeFleet({ 'i-01': 'no-output' })
  const r = await runRollout(deps(fleet.ssm), options(), ids(1))
  t.match(r.rows[0], { status: 'Success', outcome: 'Success', commit: 'unknown', durationMs: 300_000, ok: true })
  t.ok(r.withinBudget)
})

t.test('dry run and percentages', async t => {
  const fleet = fakeFleet({})
  const r = await runRollout(deps(fleet.ssm), options({ dryRun: true, maxConcurrency: { kind: 'percent', value: 50 }, maxErrors: { kind: 'percent', value: 10 } }), ids(4))
  t.same(fleet.sends.map(s => s.InstanceIds?.length), [2, 2])
  t.same(fleet.sends[0]?.Parameters, { dryRun: ['true'], executionTimeout: ['600'] })
  t.match(fleet.sends[0]?.Comment, /\(dry run\)$/)
  t.match(r, { concurrency: 2, maxErrors: 0 })
  t.equal(resolveLimit({ kind: 'percent', value: 1 }, 10, 1), 1, 'at least one instance per batch')
  t.equal(resolveLimit({ kind: 'percent', value: 25 }, 10, 0), 2)
  t.equal(resolveLimit({ kind: 'count', value: 3 }, 10, 1), 3)
})

t.test('more than 50 instances in a batch: several SendCommand calls (the API limit)', async t => {
  const fleet = fakeFleet({})
  const r = await runRollout(deps(fleet.ssm), options({ maxConcurrency: { kind: 'count', value: 120 } }), ids(120))
  t.same(fleet.sends.map(s => s.InstanceIds?.length), [50, 50, 20])
  t.equal(r.rows.filter(x => x.ok).length, 120)
})

t.test('SendCommand and GetCommandInvocation errors become failed rows, with operator remedies', async t => {
  let sends = 0
  const ssm: SsmCommandsApi = {
    async sendCommand() {
      if (++sends === 1) throw sdkError('InvalidDocument', 400, 'Document bootstrap-agent-rebootstrap does not exist')
      return { Command: { CommandId: 'cmd-2' } }
    },
    async getCommandInvocation() {
      throw sdkError('AccessDeniedException', 400, 'not authorized to perform: ssm:GetCommandInvocation')
    },
  }
  const r = await runRollout(deps(ssm), options({ maxErrors: { kind: 'count', value: 5 } }), ids(2))
  t.match(r.rows[0], { status: 'SendFailed', ok: false, detail: /ssm:SendCommand on bootstrap-agent-rebootstrap failed: InvalidDocument/ })
  t.match(r.rows[1], { status: 'PollFailed', ok: false, commandId: 'cmd-2', detail: /ssm:GetCommandInvocation on cmd-2 on i-02 failed: AccessDeniedException/ })
  t.match(r, { failures: 2, withinBudget: true })
})

t.test('findTargets: tag filters (custom keys), running only, every page, sorted and unique', async t => {
  const requests: DescribeInstancesRequest[] = []
  const inst = (...i: string[]): Instance[] => i.map(InstanceId => ({ InstanceId }))
  let throttled = false
  const ec2: Ec2InstancesApi = {
    async describeInstances(input) {
      requests.push(input)
      if (!throttled) {
        throttled = true
        throw sdkError('RequestLimitExceeded', 503)
      }
      return input.NextToken === undefined
        ? { Reservations: [{ Instances: inst('i-c', 'i-a') }], NextToken: 'p2' }
        : { Reservations: [{ Instances: inst('i-b', 'i-a') }, { Instances: [{}] }] }
    },
  }
  const found = await findTargets(ec2, options({ tagKeys: { service: 'app:service', environment: 'Env' } }), { baseMs: 1, capMs: 1 })
  t.same(found, ['i-a', 'i-b', 'i-c'])
  t.same(requests[1]?.Filters, [
    { Name: 'tag:app:service', Values: ['auth'] },
    { Name: 'tag:Env', Values: ['stage'] },
    { Name: 'instance-state-name', Values: ['running'] },
  ])
  t.equal(requests[2]?.NextToken, 'p2')

  const denied: Ec2InstancesApi = { describeInstances: async () => { throw sdkError('UnauthorizedOperation', 403) } }
  const e = await rejected(() => findTargets(denied, options()))
  t.ok(isAgentError(e) && e.code === 'AWS_ACCESS_DENIED' && /iam\/operator-policy\.json/.test(e.remedy), 'the remedy names the operator policy')
  const noCreds: Ec2InstancesApi = { describeInstances: async () => { throw Object.assign(new Error('Could not load credentials'), { name: 'CredentialsProviderError' }) } }
  const n = await rejected(() => findTargets(noCreds, options()))
  t.ok(isAgentError(n) && n.code === 'AWS_NO_CREDENTIALS' && /AWS_PROFILE/.test(n.remedy))
  const other: Ec2InstancesApi = { describeInstances: async () => { throw sdkError('InvalidParameterValue') } }
  t.match(await rejected(() => findTargets(other, options())), { code: 'AWS_INVALID_REQUEST' })
})

t.test('parseResultLine: run, plan, locked, failures before state.json, garbage', async t => {
  const state = { outcome: 'success', exitCode: 0, commit: 'abc', release: 'r1', durationMs: 12 }
  t.same(parseResultLine(`noise\n${runLine(0, state)}\n`), { command: 'run', exitCode: 0, outcome: 'success', commit: 'abc', release: 'r1', durationMs: 12 })
  t.same(parseResultLine(runLine(3, state)), { command: 'run', exitCode: 3, outcome: 'locked' }, 'lock held: the state is the other run')
  t.same(parseResultLine(runLine(2, state)), { command: 'run', exitCode: 2, outcome: 'exit 2' }, 'the state is from an earlier run')
  t.same(parseResultLine(runLine(127, null)), { command: 'run', exitCode: 127, outcome: 'exit 127' })
  const plan = (exitCode: number, p: unknown) => JSON.stringify({ result: 'bootstrap-agent-rebootstrap', command: 'plan', exitCode, plan: p })
  t.same(parseResultLine(plan(0, { commit: 'def', live: { release: 'r0' } })), { command: 'plan', exitCode: 0, outcome: 'planned', commit: 'def', release: 'r0' })
  t.same(parseResultLine(plan(0, { commit: null, live: { release: null } })), { command: 'plan', exitCode: 0, outcome: 'planned' })
  t.same(parseResultLine(plan(2, null)), { command: 'plan', exitCode: 2, outcome: 'exit 2' })
  t.equal(parseResultLine(''), undefined)
  t.equal(parseResultLine('{"result":"bootstrap-agent-rebootstrap",'), undefined, 'cut off')
  t.equal(parseResultLine('{"result":"bootstrap-agent-rebootstrap","command":"run"}'), undefined, 'no exit code')
  t.equal(parseResultLine('{"result":"other","command":"run","exitCode":0}'), undefined)
})

t.test('rowFromInvocation and durations', async t => {
  t.match(rowFromInvocation('i-1', 'c', { Status: 'Failed', StatusDetails: 'Execution Timed Out', StandardErrorContent: '\nfirst\nlast line\n' }), {
    status: 'Failed', outcome: 'Failed', ok: false, detail: 'Execution Timed Out: last line',
  })
  t.match(rowFromInvocation('i-1', 'c', { Status: 'Success', StandardOutputContent: runLine(1, { outcome: 'failed', exitCode: 1 }) }), { ok: false, outcome: 'failed' }, 'a non-zero agent exit is a failure even if SSM says Success')
  t.match(rowFromInvocation('i-1', 'c', {}), { status: 'Unknown', ok: false })
  t.equal(isoDurationMs('PT1H2M3.5S'), 3_723_500)
  t.equal(isoDurationMs('PT0.39S'), 390)
  t.equal(isoDurationMs('PT'), undefined)
  t.equal(isoDurationMs('5 minutes'), undefined)
  t.equal(isoDurationMs(undefined), undefined)
})

t.test('the table', async t => {
  const fleet = fakeFleet({ 'i-02': 'fail' })
  const r = await runRollout(deps(fleet.ssm), options({ maxConcurrency: { kind: 'count', value: 2 } }), ids(3))
  const text = formatRolloutTable(r, 'rollout of auth (stage)')
  t.match(text, /^ {2}instance +status +outcome +commit +duration +detail\n/)
  t.match(text, /\n {2}i-01 +Success +success +01aaaaaaaaaa +4200 ms\n/)
  t.match(text, /\n {2}i-02 +Failed +failed +02aaaaaaaaaa +9000 ms +bootstrap-agent: failed \[HEALTH_FAILED\]/)
  t.match(text, /\n {2}i-03 +NotSent +NotSent +unknown +not sent: more than 0 instance\(s\) failed\n/)
  t.match(text, /rollout of auth \(stage\): 1 of 3 succeeded, 1 failed, 1 not sent \(max errors 0\): error budget exceeded\n/)
  const ok = await runRollout(deps(fakeFleet({}).ssm), options(), ['i-01'])
  t.match(formatRolloutTable({ ...ok, rows: ok.rows.map(x => ({ ...x, durationMs: 42_000 })) }, 'x'), /42\.0 s[^]*within the error budget/)
})

t.test('the command line: defaults, every flag, and exit 2 with the bad value quoted', async t => {
  const parse = (args: string[], env: NodeJS.ProcessEnv = {}) => parseRolloutOptions(parseCli(['rollout', ...args]), env)
  t.same(parse(['--service', 'auth', '--environment', 'stage']), options({ timeoutSec: 2700 }), 'defaults: one at a time, no error allowed, 45 min')
  t.same(parse([
    '--service', 'auth', '--environment', 'stage', '--branch', 'feature/x-1', '--dry-run', '--max-concurrency', '25%', '--max-errors', '2',
    '--timeout', '600', '--document', 'arn:aws:ssm:eu-west-1:123456789012:document/my-doc', '--tag-key-service', 'app:service',
  ], { BOOTSTRAP_TAG_KEY_ENVIRONMENT: 'Env' }), options({
    branch: 'feature/x-1', dryRun: true, maxConcurrency: { kind: 'percent', value: 25 }, maxErrors: { kind: 'count', value: 2 },
    document: 'arn:aws:ssm:eu-west-1:123456789012:document/my-doc', tagKeys: { service: 'app:service', environment: 'Env' },
  }))
  const base = ['--service', 'auth', '--environment', 'stage']
  const bad: [string[], RegExp][] = [
    [['--environment', 'stage'], /rollout needs --service/],
    [['--service', 'auth'], /rollout needs --environment/],
    [['--service', 'Auth;', '--environment', 'stage'], /--service "Auth;" is not a valid service name/],
    [['--service', 'auth', '--environment', '../x'], /--environment "..\/x" is not a valid environment name/],
    [[...base, '--max-concurrency', '0'], /--max-concurrency "0" is not valid: expected a whole number of instances \(at least 1\) or a percentage/],
    [[...base, '--max-concurrency', '0%'], /--max-concurrency "0%" is not valid/],
    [[...base, '--max-errors', '101%'], /--max-errors "101%" is not valid/],
    [[...base, '--max-errors=-1'], /--max-errors "-1" is not valid/],
    [[...base, '--max-errors', 'two'], /--max-errors "two" is not valid/],
    [[...base, '--timeout', '10'], /--timeout "10" is not valid: expected whole seconds from 60 to 172800/],
    [[...base, '--timeout', '1e3'], /--timeout "1e3" is not valid/],
    [[...base, '--timeout', '172801'], /--timeout "172801" is not valid/],
    [[...base, '--branch', 'a..b'], /--branch "a..b" is not a valid branch name/],
    [[...base, '--branch', 'user@topic'], /--branch "user@topic" is refused by the SSM document/],
    [[...base, '--document', 'bad name'], /--document "bad name" is not an SSM document name or ARN/],
    [[...base, '--tag-key-service', 'bad\nkey'], /--tag-key-service \/ BOOTSTRAP_TAG_KEY_SERVICE "bad\\nkey" is not a valid tag key/],
    [[...base, '--local', '--root', '/'], /rollout does not take --local, --root/],
    [[...base, '--tag', 'Service=x'], /rollout does not take --tag/],
  ]
  for (const [args, message] of bad) {
    const e = thrown(() => parse(args))
    t.ok(isAgentError(e) && e.exitCode === 2, args.join(' '))
    t.match(e, { message }, args.join(' '))
  }
  t.match(thrown(() => parseCli(['rollout', '--max-errors'])), { code: 'CLI_INVALID' }, 'a flag without its value')
  t.match(thrown(() => parseCli(['run', '--max-errors', '1'])), { code: 'CLI_INVALID' }, 'rollout flags belong to rollout only')
})
