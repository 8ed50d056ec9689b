/**
 * history's reading of the report group against a fake of our narrow LogsReaderApi: every page
 * (empty pages with a token included), stream batches of 100, forged and foreign events skipped,
 * newest first, errors for the operator; and the pure parts (rows, --since).
 */
import t from 'tap'
import type { FilteredLogEvent, FilterLogEventsCommandInput } from '@aws-sdk/client-cloudwatch-logs'
import type { LogsReaderApi } from '../../../agent/src/aws/cloudwatch-logs.js'
import { historyOf, parseSince, pickReport, readReports, rowOf } from '../../../agent/src/operator/history.js'
import { REPORT_SCHEMA, type DrainReport, type Report, type RunReport } from '../../../agent/src/reports/report.js'

const sdkError = (name: string, status = 400, message = `${name} happened`) =>
  Object.assign(new Error(message), { name, $fault: status >= 500 ? 'server' : 'client', $metadata: { httpStatusCode: status } })

const runReport = (instanceId: string, runId: string, startedAt: string, over: Partial<RunReport> = {}): RunReport => ({
  schema: REPORT_SCHEMA, version: 1, kind: 'run', agentVersion: '0.1.0', instanceId, service: 'api', environment: 'prod', at: startedAt,
  run: { version: 1, runId, command: 'run', reason: 'boot', mode: 'aws', pid: 1, startedAt, outcome: 'success', exitCode: 0, commit: 'c'.repeat(40), phases: [] },
  evidence: [], ...over,
})
const drainReport = (instanceId: string, startedAt: string): DrainReport => ({
  schema: REPORT_SCHEMA, version: 1, kind: 'drain', agentVersion: '0.1.0', instanceId, service: 'api', environment: 'prod', at: startedAt,
  drain: { reason: 'terminated', trigger: 'x', startedAt, outcome: 'failed', steps: [{ name: 'stop', status: 'ok', durationMs: 1 }, { name: 'pre-stop', status: 'failed', durationMs: 1, detail: '[DRAIN_PRESTOP_FAILED] exited 3' }] },
  evidence: [],
})
const event = (r: Report | string, stream?: string): FilteredLogEvent => typeof r === 'string' ? { message: r, logStreamName: stream } : { message: JSON.stringify(r), logStreamName: stream ?? r.instanceId }

/** pages of events; records every call's input */
const fakeLogs = (pages: FilteredLogEvent[][], errors: Error[] = []) => {
  const calls: FilterLogEventsCommandInput[] = []
  const api: LogsReaderApi = {
    async filterLogEvents(input) {
      calls.push(input)
      const e = errors.shift()
      if (e) throw e
      const i = input.nextToken === undefined ? 0 : Number(input.nextToken)
      return { $metadata: {}, events: pages[i] ?? [], ...(i + 1 < pages.length ? { nextToken: String(i + 1) } : {}) }
    },
    async getLogEvents() {
      throw new Error('not used')
    },
  }
  return { api, calls }
}
const q = { group: '/bootstrap-agent/prod/api', region: 'eu-west-1', startTime: 1000 }
const retry = { baseMs: 1, capMs: 2 }

t.test('every page, empty ones too; what is no report of this version is counted, not shown', async t => {
  const a1 = runReport('i-a', 'r1', '2026-01-01T00:00:00.000Z')
  const a2 = runReport('i-a', 'r2', '2026-01-02T00:00:00.000Z')
  const b1 = runReport('i-b', 'r3', '2026-01-01T12:00:00.000Z')
  const forged = runReport('i-a', 'forged', '2026-01-03T00:00:00.000Z')
  const f = fakeLogs([[event(a1)], [], [event(b1), event('plain text', 'i-b'), event(JSON.stringify({ ...a2, version: 2 }))], [event(a2), event(forged, 'i-b')]], [sdkError('ThrottlingException', 400, 'Rate exceeded')])
  const r = await readReports(f.api, q, retry)
  t.same(r.reports.map(x => x.kind === 'run' && x.run.runId), ['r1', 'r3', 'r2'])
  t.equal(r.pages, 4)
  t.equal(r.skipped, 3, 'plain text, a newer version, and a report whose instance is not its stream')
  t.same(f.calls.map(c => [c.logGroupName, c.startTime, c.nextToken]), [[q.group, 1000, undefined], [q.group, 1000, undefined], [q.group, 1000, '1'], [q.group, 1000, '2'], [q.group, 1000, '3']], 'throttling retried, then every token followed')
})

t.test('one instance, or many in batches of 100 stream names', async t => {
  const f = fakeLogs([[]])
  await readReports(f.api, { ...q, instanceIds: Array.from({ length: 150 }, (_, i) => `i-${i}`) }, retry)
  t.same(f.calls.map(c => c.logStreamNames?.length), [100, 50])
})

t.test('a token seen before ends the reading (no endless loop)', async t => {
  let n = 0
  const api: LogsReaderApi = {
    async filterLogEvents() { n += 1; return { $metadata: {}, events: [], nextToken: 'same' } },
    async getLogEvents() { throw new Error('not used') },
  }
  await readReports(api, q, retry)
  t.equal(n, 2)
})

t.test('errors speak to the operator: a missing group names it, access denied the operator policy', async t => {
  const missing = fakeLogs([], [sdkError('ResourceNotFoundException', 400, 'The specified log group does not exist.')])
  t.match(await readReports(missing.api, q, retry).catch((e: unknown) => e), { code: 'REPORT_GROUP_MISSING', exitCode: 2, message: 'the report log group /bootstrap-agent/prod/api does not exist in eu-west-1', remedy: /--report-log-group/ })
  const denied = fakeLogs([], [sdkError('AccessDeniedException', 400, 'not authorized to perform: logs:FilterLogEvents')])
  t.match(await readReports(denied.api, q, retry).catch((e: unknown) => e), { code: 'AWS_ACCESS_DENIED', remedy: 'give your AWS identity the actions in iam/operator-policy.json' })
})

t.test('rows: newest first, this service and environment, drains with their failed step', async t => {
  // a run whose settings failed names no service or environment
  const early = runReport('i-d', 'early', '2026-01-01T06:00:00.000Z')
  delete early.service
  delete early.environment
  const reports: Report[] = [
    runReport('i-a', 'r1', '2026-01-01T00:00:00.000Z'),
    drainReport('i-a', '2026-01-03T00:00:00.000Z'),
    runReport('i-b', 'r2', '2026-01-02T00:00:00.000Z', { run: { ...runReport('i-b', 'r2', '2026-01-02T00:00:00.000Z').run, outcome: 'rolled-back', error: { code: 'HEALTH_FAILED', message: 'm', remedy: 'r', phase: 'verify' } } }),
    runReport('i-c', 'other', '2026-01-04T00:00:00.000Z', { service: 'web' }),
    early,
  ]
  const h = historyOf(reports, 'api', 'prod')
  t.same(h.map(rowOf), [
    { time: '2026-01-03T00:00:00.000Z', instanceId: 'i-a', kind: 'drain', reason: 'drain (terminated)', outcome: 'failed', failedPhase: 'pre-stop', errorCode: 'DRAIN_PRESTOP_FAILED' },
    { time: '2026-01-02T00:00:00.000Z', instanceId: 'i-b', kind: 'run', runId: 'r2', reason: 'boot', outcome: 'rolled-back', commit: 'c'.repeat(40), failedPhase: 'verify', errorCode: 'HEALTH_FAILED' },
    { time: '2026-01-01T06:00:00.000Z', instanceId: 'i-d', kind: 'run', runId: 'early', reason: 'boot', outcome: 'success', commit: 'c'.repeat(40) },
    { time: '2026-01-01T00:00:00.000Z', instanceId: 'i-a', kind: 'run', runId: 'r1', reason: 'boot', outcome: 'success', commit: 'c'.repeat(40) },
  ], "another service's report is left out; one that names none (its settings failed) stays")
  t.equal(pickReport(h, undefined), h[0])
  t.match(pickReport(h, 'r2'), { run: { runId: 'r2' } }, 'a run by its id or prefix')
  t.equal(pickReport(h, 'zz'), undefined)
})

t.test('--since', async t => {
  const now = Date.parse('2026-01-10T00:00:00Z')
  t.equal(parseSince('30m', now), now - 30 * 60_000)
  t.equal(parseSince('24h', now), now - 86_400_000)
  t.equal(parseSince('7d', now), now - 7 * 86_400_000)
  t.equal(parseSince('2026-01-01T12:00Z', now), Date.parse('2026-01-01T12:00Z'))
  for (const bad of ['yesterday', '5w', '-1h', '2026-13-45', '']) t.equal(parseSince(bad, now), undefined, bad)
})
