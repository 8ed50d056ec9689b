import { Writable } from 'node:stream'
import pino from 'pino'
import t from 'tap'
import { REPORT_SCHEMA, type RunReport } from '../../../agent/src/reports/report.js'
import { deliverReport, REPORT_DEADLINE_MS, type ReportSink } from '../../../agent/src/reports/sink.js'

const logger = () => {
  const lines: { level: number; msg: string; [k: string]: unknown }[] = []
  const log = pino({ level: 'info' }, new Writable({ write(c: Buffer, _e, done) { lines.push(JSON.parse(c.toString())); done() } }))
  return { log, lines }
}

const report = (evidence = 'npm error code 1'): RunReport => ({
  schema: REPORT_SCHEMA, version: 1, kind: 'run', agentVersion: '0.1.0', instanceId: 'i-0abc', at: '2026-01-01T00:01:00.000Z',
  run: { version: 1, runId: 'r', command: 'run', reason: 'boot', mode: 'aws', pid: 1, startedAt: '2026-01-01T00:00:00.000Z', outcome: 'failed', phases: [] },
  evidence: [{ kind: 'npm', source: 'npm ci stderr', text: evidence }],
})

t.test('sent: one event in the instance stream, timestamped with the report', async t => {
  const puts: { stream: string; timestamp: number; message: string }[] = []
  const sink: ReportSink = { description: 'test sink', async put(stream, e) { puts.push({ stream, ...e }) } }
  const { log, lines } = logger()
  const d = await deliverReport({ sink, report: report(), log })
  t.match(d, { status: 'sent', truncated: false })
  t.same(puts, [{ stream: 'i-0abc', timestamp: Date.parse('2026-01-01T00:01:00.000Z'), message: JSON.stringify(report()) }])
  t.match(lines, [{ level: 30, msg: 'run report sent to test sink', stream: 'i-0abc', kind: 'run' }])
  t.equal(REPORT_DEADLINE_MS, 5000, 'the documented deadline')
})

t.test('failed: a warning, never an exception', async t => {
  const sink: ReportSink = { description: 'test sink', async put() { throw new Error('AccessDeniedException: not authorized to perform logs:PutLogEvents') } }
  const { log, lines } = logger()
  t.same(await deliverReport({ sink, report: report(), log }), { status: 'failed', error: 'AccessDeniedException: not authorized to perform logs:PutLogEvents' })
  t.match(lines, [{ level: 40, msg: /^run report not sent: AccessDeniedException.*; the run's outcome is unchanged$/ }])
})

t.test('no answer: the deadline ends it and the request is abandoned', async t => {
  let aborted = false
  const sink: ReportSink = {
    description: 'stalled sink',
    put: (_s, _e, signal) => new Promise<void>((_resolve, reject) => {
      signal.addEventListener('abort', () => {
        aborted = true
        reject(new Error('aborted'))
      })
    }),
  }
  const { log, lines } = logger()
  t.same(await deliverReport({ sink, report: report(), log, deadlineMs: 20 }), { status: 'timed-out' })
  t.ok(aborted, 'the request in flight was aborted')
  t.match(lines, [{ level: 40, msg: /no answer within its 0\.02 s deadline/, deadlineMs: 20 }])
})

t.test('a report too big for one event is cut, sent, and the cut logged', async t => {
  let message = ''
  const sink: ReportSink = { description: 'test sink', async put(_s, e) { message = e.message } }
  const { log, lines } = logger()
  const d = await deliverReport({ sink, report: report('x\n'.repeat(700_000)), log })
  t.match(d, { status: 'sent', truncated: true })
  t.ok(Buffer.byteLength(message) <= 1_048_550)
  t.match(lines, [{ level: 40, msg: /^run report cut to fit one CloudWatch Logs event/ }, { level: 30 }])
})
