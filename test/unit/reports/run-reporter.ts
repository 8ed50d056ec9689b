import { Writable } from 'node:stream'
import pino from 'pino'
import t from 'tap'
import { resolveSettings } from '../../../agent/src/config/settings.js'
import { AgentError } from '../../../agent/src/core/errors.js'
import type { RunReport } from '../../../agent/src/reports/report.js'
import { createRunReporter } from '../../../agent/src/reports/run-reporter.js'
import type { ReportSink } from '../../../agent/src/reports/sink.js'
import type { RunContext, Seams } from '../../../agent/src/run/context.js'
import type { RunState } from '../../../agent/src/run/state.js'
import type { InstanceIdentity } from '../../../agent/src/seams/identity.js'
import { createScrubber } from '../../../agent/src/secrets/redact.js'
import { VERSION } from '../../../agent/src/version.js'

const unused = (what: string) => (): never => {
  throw new Error(`${what} is not used by the reporter`)
}
const TAGS = { Service: 'api', Environment: 'prod', Repository: 'file:///r.git' }
const identity: InstanceIdentity = { instanceId: 'i-0abc', region: 'eu-west-1', availabilityZone: 'eu-west-1a', tags: TAGS, lifecycleState: 'Pending:Wait', source: 'test' }
const state: RunState = { version: 1, runId: 'r', command: 'run', reason: 'boot', mode: 'aws', pid: 1, startedAt: '2026-01-01T00:00:00.000Z', outcome: 'failed', phases: [] }

const world = (o: { env?: Record<string, string>; settings?: boolean; identity?: boolean; sink?: boolean } = {}) => {
  const sent: { group: string; stream: string; report: RunReport }[] = []
  const lines: { msg: string }[] = []
  const log = pino({ level: 'info' }, new Writable({ write(c: Buffer, _e, done) { lines.push(JSON.parse(c.toString())); done() } }))
  const input = { flags: {}, env: o.env ?? { BOOTSTRAP_REPORT_LOG_GROUP: '/bootstrap-agent/{environment}/{service}' }, agentEnv: {}, mode: 'aws' as const }
  const seams: Seams = {
    exec: { run: unused('exec') }, identity: { identify: unused('identity') }, git: unused('git'), secrets: unused('secrets'), pm2: unused('pm2'), hook: unused('hook'), cacheStore: async () => undefined,
    reportSink: (group): ReportSink | undefined => (o.sink === false ? undefined : {
      description: `group ${group}`,
      async put(stream, e) { sent.push({ group, stream, report: JSON.parse(e.message) as RunReport }) },
    }),
    now: () => new Date('2026-01-01T00:02:00Z'),
  }
  const ctx: RunContext = {
    seams, log, scrubber: createScrubber(), input,
    ...(o.identity === false ? {} : { identity }),
    ...(o.settings === false ? {} : { settings: resolveSettings({ ...input, tags: TAGS }) }),
    release: { id: '20260101T000000Z-bbbbbbbbbbbb', dir: '/x', serviceDir: '/x', commit: 'b'.repeat(40), reused: false },
    liveRelease: '20251231T000000Z-aaaaaaaaaaaa',
    switched: { release: true, env: true, previousRelease: '20251231T000000Z-aaaaaaaaaaaa' },
    rolledBack: true,
  }
  return { ctx, sent, lines }
}

t.test('one report per run, to the group of the settings, with the evidence and what serves', async t => {
  const w = world()
  const r = createRunReporter(w.ctx)
  const failure = new AgentError('health check failed', { code: 'HEALTH_FAILED', remedy: 'x', evidence: [{ kind: 'service-log', source: 'api-error.log', text: 'boom' }] })
  t.match(await r.send(state, failure, 'ABANDON'), { status: 'sent' })
  t.equal(await r.send(state, failure), undefined, 'the second call sends nothing')
  t.equal(w.sent.length, 1)
  t.match(w.sent[0], {
    group: '/bootstrap-agent/prod/api', stream: 'i-0abc',
    report: { kind: 'run', agentVersion: VERSION, instanceId: 'i-0abc', hookAfter: 'ABANDON', at: '2026-01-01T00:02:00.000Z', evidence: [{ kind: 'service-log', text: 'boom' }], serving: { release: '20251231T000000Z-aaaaaaaaaaaa', commit: 'aaaaaaaaaaaa' } },
  })
})

t.test('settings that failed: the group from the layers below them', async t => {
  const w = world({ settings: false })
  await createRunReporter(w.ctx).send(state, new AgentError('bad tag', { code: 'CONFIG_INVALID', remedy: 'x' }), 'ABANDON')
  t.equal(w.sent[0]?.group, '/bootstrap-agent/prod/api')
})

t.test('nothing sent: reports off, no instance id, no sink (local mode)', async t => {
  const off = world({ env: {} })
  t.equal(await createRunReporter(off.ctx).send(state, undefined), undefined)
  t.same(off.sent, [])
  t.same(off.lines, [], 'off is silent')
  const anonymous = world({ identity: false, settings: true })
  await createRunReporter(anonymous.ctx).send(state, undefined)
  t.match(anonymous.lines, [{ msg: /run report not sent: the instance was not identified/ }])
  const local = world({ sink: false })
  await createRunReporter(local.ctx).send(state, undefined)
  t.match(local.lines, [{ msg: /run report not sent: run reports go to CloudWatch Logs/ }])
  t.same([...anonymous.sent, ...local.sent], [])
})
