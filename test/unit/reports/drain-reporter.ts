import { Writable } from 'node:stream'
import pino from 'pino'
import t from 'tap'
import type { DrainReport } from '../../../agent/src/reports/report.js'
import { createDrainReporter, drainReportGroup } from '../../../agent/src/reports/drain-reporter.js'
import type { RunState } from '../../../agent/src/run/state.js'
import { createScrubber } from '../../../agent/src/secrets/redact.js'
import type { DrainRecord, WatchState } from '../../../agent/src/watch/state.js'

const logger = () => {
  const lines: { msg: string }[] = []
  return { lines, log: pino({ level: 'info' }, new Writable({ write(c: Buffer, _e, done) { lines.push(JSON.parse(c.toString())); done() } })) }
}
const last: RunState = { version: 1, runId: 'r', command: 'run', reason: 'boot', mode: 'aws', pid: 1, startedAt: 'x', outcome: 'success', service: 'api', environment: 'prod', reportLogGroup: '/from/config-parameter', phases: [] }
const drain: DrainRecord = { reason: 'terminated', trigger: 'target lifecycle state Terminated', startedAt: 'x', outcome: 'ok', steps: [{ name: 'stop', status: 'ok', durationMs: 3 }] }
const watch: WatchState = { version: 1, pid: 1, bootId: 'b', startedAt: 'x', imds: { ok: true, consecutiveFailures: 0 }, runs: [], targetState: 'Terminated' }

t.test('the group: the watch setting with the last run\'s names, else the group the last run used', async t => {
  const { log, lines } = logger()
  t.equal(drainReportGroup('/bootstrap-agent/{environment}/{service}', last, log), '/bootstrap-agent/prod/api')
  t.equal(drainReportGroup('/fixed', undefined, log), '/fixed')
  t.equal(drainReportGroup(undefined, last, log), '/from/config-parameter')
  t.equal(drainReportGroup(undefined, undefined, log), undefined)
  t.same(lines, [])
  t.equal(drainReportGroup('/r/{service}', undefined, log), undefined, 'no run named the service')
  t.equal(drainReportGroup(`/r/{service}${'x'.repeat(600)}`, last, log), undefined, 'too long once expanded')
  t.match(lines, [{ msg: /no run recorded the service and environment/ }, { msg: 'drain report not sent' }])
})

t.test('sends one drain report, to the instance stream, AWS_REGION first', async t => {
  const { log } = logger()
  const sent: { group: string; region: string; stream: string; report: DrainReport }[] = []
  const report = createDrainReporter({
    settings: { reportLogGroupTemplate: '/bootstrap-agent/{environment}/{service}' }, log, scrubber: createScrubber(),
    lastRun: async () => last,
    sink: (group, region) => ({ description: group, async put(stream, e) { sent.push({ group, region, stream, report: JSON.parse(e.message) as DrainReport }) } }),
    region: 'us-east-2',
    now: () => new Date('2026-01-01T00:00:00Z'),
  })
  await report(drain, watch, { instanceId: 'i-0abc', region: 'eu-west-1' }, true)
  t.match(sent, [{ group: '/bootstrap-agent/prod/api', region: 'us-east-2', stream: 'i-0abc', report: { kind: 'drain', hookAfter: 'CONTINUE', service: 'api', environment: 'prod', targetState: 'Terminated', drain: { outcome: 'ok' } } }])
  await report(drain, watch, undefined, false)
  t.equal(sent.length, 1, 'no instance id: no stream to write')
})
