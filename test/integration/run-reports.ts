/**
 * Run reports end to end: the real agent CLI in AWS mode writes its reports through the real SDK
 * to moto's CloudWatch Logs (behind the lifecycle proxy), and the operator commands `history` and
 * `fleet` read them back from moto with the SDK (FilterLogEvents, GetLogEvents: both served by
 * moto 5.2.5, with its own pagination). Three instances of one Auto Scaling group boot one after
 * the other, each with its own root, IMDSv2 server and PM2: a failed boot whose root is deleted
 * afterwards (a terminated instance), a successful boot and an SSM re-run, and a third boot of a
 * later commit. Then CloudWatch Logs unreachable, denied and stalled (a fault proxy that accepts
 * the connection and never answers): the run's outcome, exit code and hook result do not change,
 * and the failing boot still sends its ABANDON once the report's deadline fired. A group of more
 * than 10,000 reports proves `history` follows FilterLogEvents' pages. Every event the groups
 * hold is scanned for the secret values; moto's recorder holds both IAM policies to what was called.
 * (The commands print JSON here, their output not being a TTY; the tables: test/unit/commands/report-output.ts.)
 */
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { CreateLogStreamCommand, PutLogEventsCommand } from '@aws-sdk/client-cloudwatch-logs'
import { CreateTagsCommand } from '@aws-sdk/client-ec2'
import { CreateSecretCommand } from '@aws-sdk/client-secrets-manager'
import { CreateDocumentCommand } from '@aws-sdk/client-ssm'
import { startAwsWorld } from '../helpers/aws-world.js'
import { startFaultProxy } from '../helpers/fault-proxy.js'
import { createFixtureRepo } from '../helpers/fixture-repo.js'
import { findLeaks, leaksAfterRun } from '../helpers/leak-scan.js'
import type { RecordedAction } from '../helpers/moto.js'
import { appFiles, freePort, killPm2, removeSandbox, REPO, runCli, sandboxDir, type CliResult } from '../helpers/sandbox.js'

const dir = sandboxDir('run-reports')
const roots: string[] = []
t.teardown(() => {
  for (const r of roots) killPm2(r)
  removeSandbox(dir)
})

const world = await startAwsWorld(t)
const { moto, proxy } = world

const service = 'app'
const GROUP = `/bootstrap-agent/stage/${service}`
await world.createLogGroup(GROUP)
const apiKey = `key-${randomBytes(16).toString('hex')}`
const SECRETS = [apiKey]
await world.sm.send(new CreateSecretCommand({ Name: `stage/${service}`, SecretString: JSON.stringify({ API_KEY: apiKey }) }))

// a release that prints its secret and a marker to stderr, then exits: its health gate fails
const marker = `crash-marker-${randomBytes(6).toString('hex')}`
const port = await freePort()
const crashing = appFiles({ port, greeting: 'broken' })
crashing['server.js'] = `console.error('fatal: cannot start with API_KEY=' + process.env.API_KEY)\nconsole.error(${JSON.stringify(marker)})\nprocess.exit(1)\n`
const repo = await createFixtureRepo({ root: join(dir, 'git'), name: 'app', branches: { stage: crashing } })
const failCommit = await repo.head('stage')
const good = (greeting: string) => ({ 'server.js': appFiles({ port, greeting })['server.js'] ?? '' })

const hookName = 'launching'
const group = await world.createGroup({ hooks: [{ name: hookName, heartbeatTimeout: 120 }], size: 3 })
const [A, B, C] = group.instanceIds as [string, string, string]
const TAGS = { Service: service, Environment: 'stage', Repository: repo.fileUrl }
// the fleet is found by these tags, as launch templates put them on the instances
await world.ec2.send(new CreateTagsCommand({ Resources: group.instanceIds, Tags: Object.entries(TAGS).map(([Key, Value]) => ({ Key, Value })) }))

interface Instance { id: string; root: string; envFile: string; env: Record<string, string> }
const instance = async (id: string, extra: Record<string, string> = {}): Promise<Instance> => {
  const imds = await world.startImds({ instanceId: id, tags: TAGS, lifecycleState: 'InService' })
  const root = join(dir, `root-${id}-${roots.length}`)
  roots.push(root)
  return { id, root, envFile: join(root, `etc/bootstrap-agent/env/${service}.env`), env: world.agentEnv(imds.endpoint, { BOOTSTRAP_REPORT_LOG_GROUP: '/bootstrap-agent/{environment}/{service}', ...extra }) }
}
/** the crashing release prints its secret into its own logs: those files are the service's, not the agent's output */
const serviceLogs = (root: string) => [join(root, `srv/${service}/logs/${service}-error.log`), join(root, `srv/${service}/logs/${service}-out.log`)]
const run = (i: Instance, reason: string, extra: string[] = []) =>
  runCli(['run', '--reason', reason, '--root', i.root, '--json', '--stable-window', '1', '--health-timeout', '8', ...extra], i.env)

/** the operator's laptop: credentials, a region, moto as the endpoint of every service */
const OPERATOR = { AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test', AWS_ENDPOINT_URL: moto.endpoint }
const agentActions = new Set<string>()
const operatorActions = new Set<string>()
const names = (a: RecordedAction[]) => a.map(x => `${x.service}:${x.action}`)

const recorded = async <T>(into: Set<string>, fn: () => Promise<T>): Promise<T> => {
  await moto.startRecording()
  try {
    return await fn()
  } finally {
    await moto.stopRecording()
    for (const a of names(await moto.recordedActions())) into.add(a)
  }
}
const operator = (args: string[]) => recorded(operatorActions, () => runCli(args, OPERATOR))

const exits = (t: Test, r: CliResult, code: number) =>
  t.equal(r.code, code, `exit ${code}`, r.code === code ? {} : { stderr: r.stderr, stdout: r.stdout.slice(-6000) })
const completions = (since: number) => proxy.completions().slice(since)

interface Row { time: string; instanceId: string; kind: string; runId?: string; reason: string; commit?: string; outcome: string; failedPhase?: string; errorCode?: string }
const historyRows = (r: CliResult) => {
  const lines = r.stdout.trim().split('\n').map(l => JSON.parse(l) as Record<string, unknown>)
  const summary = lines.pop()?.['summary'] as { runs: number; instances: number; pages: number; skipped: number }
  return { rows: lines as unknown as Row[], summary }
}
interface ReportJson {
  kind: string; instanceId: string; hookAfter?: string; agentVersion: string
  run: { outcome: string; exitCode: number; commit?: string; reason: string; error?: { code: string; phase?: string; message: string }; phases: { name: string; status: string; detail?: string }[] }
  serving?: { release: string; commit: string }
  evidence: { kind: string; source: string; text: string }[]
}
const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version
/** the lines the agent logged, in order */
const logLines = (r: CliResult) => r.stdout.split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l) as { msg: string; [k: string]: unknown })

t.test('a failed boot, its root deleted: history still shows the run, its failed phase, error and the service log tail', async t => {
  const a = await instance(A)
  proxy.setActive([{ instanceId: A, hookName }])
  t.teardown(() => proxy.setActive([]))
  const before = proxy.completions().length
  const r = await recorded(agentActions, () => run(a, 'boot'))
  exits(t, r, 1)
  t.match(completions(before), [{ instanceId: A, hookName, result: 'ABANDON' }], 'one ABANDON')
  const log = logLines(r)
  const sent = log.findIndex(l => /^run report sent to CloudWatch Logs group \/bootstrap-agent\/stage\/app$/.test(l.msg))
  const abandoned = log.findIndex(l => l.msg === 'lifecycle action completed: ABANDON')
  t.ok(sent >= 0 && abandoned > sent, `the report was sent before the ABANDON (log lines ${sent} < ${abandoned})`)
  t.same(leaksAfterRun(SECRETS, a.root, a.envFile, r, serviceLogs(a.root)), [], "no secret value on the instance outside the env file and the service's own logs")
  // the instance is terminated: everything on it is gone
  killPm2(a.root)
  rmSync(a.root, { recursive: true, force: true })

  const h = await operator(['history', '--service', service, '--environment', 'stage', '--json'])
  exits(t, h, 0)
  const { rows } = historyRows(h)
  t.match(rows, [{ instanceId: A, kind: 'run', reason: 'boot', commit: failCommit, outcome: 'failed', failedPhase: 'verify', errorCode: 'HEALTH_FAILED' }])

  const one = await operator(['history', '--service', service, '--environment', 'stage', '--instance', A, '--json'])
  exits(t, one, 0)
  const report = JSON.parse(one.stdout) as ReportJson
  t.match(report, { kind: 'run', instanceId: A, agentVersion: VERSION, hookAfter: 'ABANDON', run: { outcome: 'failed', exitCode: 1, commit: failCommit, error: { code: 'HEALTH_FAILED', phase: 'verify' } } })
  t.match(report.run.phases.find(p => p.name === 'complete'), { status: 'not-run', detail: 'ABANDON is sent after this report' })
  t.equal(report.serving, undefined, 'a first release that failed leaves nothing serving')
  const tail = report.evidence.find(e => e.kind === 'service-log' && e.source.endsWith(`${service}-error.log`))
  t.match(tail?.text, marker, "the service's log tail is in the evidence")
  t.match(tail?.text, 'fatal: cannot start with API_KEY=[REDACTED]', 'its secret value scrubbed')
})

t.test('a successful boot and an SSM re-run: two rows, newest first', async t => {
  await repo.commit('stage', good('b v1'))
  const b = await instance(B)
  proxy.setActive([{ instanceId: B, hookName }])
  const before = proxy.completions().length
  const boot = await recorded(agentActions, () => run(b, 'boot'))
  exits(t, boot, 0)
  t.match(completions(before), [{ instanceId: B, result: 'CONTINUE' }])
  proxy.setActive([])
  await repo.commit('stage', good('b v2'))
  const ssm = await recorded(agentActions, () => run(b, 'ssm'))
  exits(t, ssm, 0)
  const bCommit = await repo.head('stage')
  for (const r of [boot, ssm]) t.same(leaksAfterRun(SECRETS, b.root, b.envFile, r), [])

  const h = await operator(['history', '--service', service, '--environment', 'stage', '--since', '1h', '--json'])
  exits(t, h, 0)
  const { rows, summary } = historyRows(h)
  t.match(rows, [
    { instanceId: B, reason: 'ssm', outcome: 'success', commit: bCommit },
    { instanceId: B, reason: 'boot', outcome: 'success' },
    { instanceId: A, reason: 'boot', outcome: 'failed' },
  ], 'newest first, across instances')
  t.equal(rows.length, 3)
  t.match(summary, { runs: 3, instances: 2, skipped: 0 })
  killPm2(b.root)
})

t.test('fleet: three instances of the group, three commits, drift', async t => {
  await repo.commit('stage', good('c v1'))
  const c = await instance(C)
  const r = await recorded(agentActions, () => run(c, 'boot'))
  exits(t, r, 0)
  const cCommit = await repo.head('stage')
  killPm2(c.root)

  const f = await operator(['fleet', '--service', service, '--environment', 'stage', '--json'])
  exits(t, f, 0)
  const lines = f.stdout.trim().split('\n').map(l => JSON.parse(l) as Record<string, unknown>)
  const summary = lines.pop()?.['summary'] as { instances: number; drift: boolean; serving: { commit: string; instances: string[] }[] }
  const byId = new Map(lines.map(l => [l['instanceId'], l]))
  t.equal(lines.length, 3)
  for (const id of [A, B, C]) t.match(byId.get(id), { group: group.asgName, lifecycleState: 'InService', health: 'Healthy', state: 'running' }, `${id}: Auto Scaling's view`)
  t.match(byId.get(A), { lastRun: { reason: 'boot', outcome: 'failed', commit: failCommit, errorCode: 'HEALTH_FAILED' } })
  t.notOk((byId.get(A)?.['lastRun'] as Record<string, unknown>)['serving'], 'nothing serves on A')
  t.match(byId.get(B), { lastRun: { reason: 'ssm', outcome: 'success', serving: { commit: (byId.get(B)?.['lastRun'] as { commit: string }).commit } } })
  t.match(byId.get(C), { lastRun: { reason: 'boot', outcome: 'success', commit: cCommit, serving: { commit: cCommit } } })
  t.equal(summary.drift, true)
  t.equal(summary.serving.length, 3, 'three different things serve: none, and two commits')

})

const failingBoot = async (t: Test, extra: Record<string, string>) => {
  await repo.commit('stage', crashing)
  const a = await instance(A, extra)
  proxy.setActive([{ instanceId: A, hookName }])
  t.teardown(() => proxy.setActive([]))
  const before = proxy.completions().length
  const r = await run(a, 'boot')
  killPm2(a.root)
  exits(t, r, 1)
  t.match(JSON.parse(readFileSync(join(a.root, 'var/lib/bootstrap-agent/state.json'), 'utf8')), { outcome: 'failed', exitCode: 1, error: { code: 'HEALTH_FAILED' } }, 'the outcome is the one of the failure itself')
  t.match(completions(before), [{ instanceId: A, result: 'ABANDON', status: 200 }], 'the ABANDON went out')
  t.equal(completions(before).length, 1)
  t.match(r.stderr, /bootstrap-agent: failed \[HEALTH_FAILED\]/)
  return { r, log: logLines(r) }
}

t.test('CloudWatch Logs unreachable, denied or stalled: outcome, exit code and hook result unchanged', async t => {
  const eventsBefore = (await world.logEvents(GROUP)).length

  t.test('unreachable (nothing listens)', async t => {
    const closed = `http://127.0.0.1:${await freePort()}`
    const { log } = await failingBoot(t, { AWS_ENDPOINT_URL_CLOUDWATCH_LOGS: closed })
    t.ok(log.some(l => /^AWS PutLogEvents failed \(ECONNREFUSED\); retrying$/.test(l.msg)), 'retried by the agent\'s retry policy')
    t.ok(log.some(l => /^run report not sent: /.test(l.msg)), 'a warning')
  })

  t.test('denied', async t => {
    const denied = await startFaultProxy(proxy.endpoint)
    t.teardown(() => denied.stop())
    denied.fail({ kind: 'status', status: 400, headers: { 'content-type': 'application/x-amz-json-1.1' }, body: JSON.stringify({ __type: 'AccessDeniedException', message: 'User is not authorized to perform: logs:PutLogEvents' }) })
    const { log } = await failingBoot(t, { AWS_ENDPOINT_URL_CLOUDWATCH_LOGS: denied.endpoint })
    t.match(log.find(l => /^run report not sent/.test(l.msg)), { msg: /AWS logs:PutLogEvents on \/bootstrap-agent\/stage\/app:i-[0-9a-f]+ failed: AccessDeniedException/ })
    t.equal(denied.requests.length, 1, 'access denied is not retried')

    // a successful boot under the same denial: CONTINUE, exit 0
    await repo.commit('stage', good('a v2'))
    const a = await instance(A, { AWS_ENDPOINT_URL_CLOUDWATCH_LOGS: denied.endpoint })
    proxy.setActive([{ instanceId: A, hookName }])
    const before = proxy.completions().length
    const r = await run(a, 'boot')
    killPm2(a.root)
    exits(t, r, 0)
    t.match(completions(before), [{ instanceId: A, result: 'CONTINUE' }])
    t.ok(logLines(r).some(l => /^run report not sent/.test(l.msg)))
  })

  t.test('stalled (the connection is accepted, no answer ever): the deadline fires, then the ABANDON', async t => {
    const stalled = await startFaultProxy(proxy.endpoint)
    t.teardown(() => stalled.stop())
    stalled.fail({ kind: 'stall' })
    const { log } = await failingBoot(t, { AWS_ENDPOINT_URL_CLOUDWATCH_LOGS: stalled.endpoint })
    t.ok(stalled.requests.length >= 1 && stalled.requests.every(q => q.fault === 'stall'), 'the report request reached the endpoint and got no answer')
    const gaveUp = log.findIndex(l => /^run report not sent: no answer within its 5 s deadline/.test(l.msg))
    const abandoned = log.findIndex(l => l.msg === 'lifecycle action completed: ABANDON')
    t.ok(gaveUp >= 0 && abandoned > gaveUp, `the deadline fired (line ${gaveUp}), then the ABANDON (line ${abandoned})`)
  })

  t.test('none of them reached the group', async t => {
    t.equal((await world.logEvents(GROUP)).length, eventsBefore)
  })
})

t.test('history pages through a group of more than 10,000 reports (FilterLogEvents: 10,000 events a page)', async t => {
  const bulk = '/bootstrap-agent/bulk/app'
  await world.createLogGroup(bulk)
  const streams = Array.from({ length: 20 }, (_, i) => `i-${(0x1000000 + i).toString(16).padStart(17, '0')}`)
  const total = 10_050
  const now = Date.now()
  const report = (n: number, stream: string, at: number) => JSON.stringify({
    schema: 'bootstrap-agent/report', version: 1, kind: 'run', agentVersion: VERSION, instanceId: stream, service: 'app', environment: 'bulk', at: new Date(at).toISOString(),
    run: { version: 1, runId: `run-${String(n).padStart(6, '0')}`, command: 'run', reason: 'ssm', mode: 'aws', pid: 1, startedAt: new Date(at - 1000).toISOString(), outcome: 'success', exitCode: 0, commit: 'c'.repeat(40), phases: [] },
    evidence: [],
  })
  for (const [s, stream] of streams.entries()) {
    await world.logs.send(new CreateLogStreamCommand({ logGroupName: bulk, logStreamName: stream }))
    const mine = Array.from({ length: Math.ceil(total / streams.length) }, (_, k) => k * streams.length + s).filter(n => n < total)
    // oldest first within a stream, as PutLogEvents requires
    const events = mine.reverse().map(n => ({ timestamp: now - n * 1000, message: report(n, stream, now - n * 1000) }))
    await world.logs.send(new PutLogEventsCommand({ logGroupName: bulk, logStreamName: stream, logEvents: events }))
  }
  const h = await operator(['history', '--service', 'app', '--environment', 'bulk', '--since', '7d', '--json'])
  exits(t, h, 0)
  const { rows, summary } = historyRows(h)
  t.equal(rows.length, total, 'every run')
  t.ok(summary.pages >= 2, `${summary.pages} pages read`)
  t.equal(rows[0]?.runId, 'run-000000', 'the newest first')
  t.equal(rows[total - 1]?.runId, `run-${String(total - 1).padStart(6, '0')}`, 'the oldest last')
  t.ok(rows.every((r, i) => i === 0 || (rows[i - 1]?.time ?? '') >= r.time), 'in order')
})

t.test('bad input and a missing group: exit 2 with the value and what to do', async t => {
  const cases: [string[], RegExp][] = [
    [['history', '--service', service, '--environment', 'stage', '--since', 'yesterday'], /--since "yesterday" is not valid: expected minutes, hours or days/],
    [['history', '--service', service, '--environment', 'stage', '--instance', 'web-1'], /--instance "web-1" is not an instance id/],
    [['history', '--service', service, '--environment', 'stage', '--run', 'abc'], /--run needs --instance/],
    [['history', '--service', service, '--environment', 'qa'], /\[REPORT_GROUP_MISSING\]: the report log group \/bootstrap-agent\/qa\/app does not exist in us-east-1/],
    [['fleet', '--service', service, '--environment', 'stage', '--report-log-group', '/nope'], /\[REPORT_GROUP_MISSING\]: the report log group \/nope does not exist/],
    [['fleet', '--environment', 'stage'], /fleet needs --service/],
    [['history', '--service', service, '--environment', 'stage', '--instance', A, '--run', 'zzzz'], /\[REPORT_NOT_FOUND\]: no run "zzzz" of i-/],
  ]
  for (const [args, message] of cases) {
    const r = await runCli(args, OPERATOR)
    t.equal(r.code, 2, args.join(' '))
    t.match(r.stderr, message)
  }
})

t.test('no secret value in anything the report groups hold', async t => {
  const events = await world.logEvents(GROUP)
  t.equal(events.length, 4, 'the reports of A, B (boot and SSM) and C: the faulty runs sent none')
  t.same(findLeaks(SECRETS, { root: dir, allow: roots.flatMap(r => [join(r, `etc/bootstrap-agent/env/${service}.env`), ...serviceLogs(r)]), texts: Object.fromEntries(events.map((e, i) => [`event ${i} of ${e.logStreamName}`, e.message ?? ''])) }), [])
})

t.test('the IAM policies list exactly the actions called: the agent\'s (and rollout\'s, history\'s, fleet\'s for the operator)', async t => {
  await world.ssm.send(new CreateDocumentCommand({ Name: 'bootstrap-agent-rebootstrap', Content: readFileSync(join(REPO, 'ssm/rebootstrap.json'), 'utf8'), DocumentType: 'Command', DocumentFormat: 'JSON' }))
  const rollout = await operator(['rollout', '--service', service, '--environment', 'stage', '--dry-run', '--max-concurrency', '100%', '--json'])
  exits(t, rollout, 0)
  const actions = (file: string) => new Set((JSON.parse(readFileSync(join(REPO, file), 'utf8')) as { Statement: { Action: string | string[] }[] }).Statement.flatMap(s => (Array.isArray(s.Action) ? s.Action : [s.Action])))
  const agent = actions('iam/agent-policy.json')
  t.same([...agentActions].filter(a => !agent.has(a)).sort(), [], 'every action the agent called is in its policy')
  t.ok(agentActions.has('logs:PutLogEvents') && agentActions.has('logs:CreateLogStream'), 'the report actions were called')
  t.same([...operatorActions].sort(), [...actions('iam/operator-policy.json')].sort(), 'the operator policy is exactly what rollout, history and fleet called')
})
