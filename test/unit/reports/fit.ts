import t from 'tap'
import { fitReport, MAX_EVENT_BYTES } from '../../../agent/src/reports/fit.js'
import { REPORT_SCHEMA, REPORT_VERSION, type DrainReport, type RunReport } from '../../../agent/src/reports/report.js'

const run = (evidence: { source: string; text: string }[], over: Partial<RunReport['run']> = {}): RunReport => ({
  schema: REPORT_SCHEMA, version: REPORT_VERSION, kind: 'run', agentVersion: '0.1.0', instanceId: 'i-0abc', service: 'api', environment: 'prod',
  at: '2026-01-01T00:00:00.000Z',
  run: {
    version: 1, runId: 'r-1', command: 'run', reason: 'boot', mode: 'aws', pid: 7, startedAt: '2026-01-01T00:00:00.000Z', outcome: 'failed', exitCode: 1,
    commit: 'a'.repeat(40), release: '20260101T000000Z-aaaaaaaaaaaa',
    phases: [{ name: 'install', status: 'failed', durationMs: 5, detail: 'npm ci failed' }],
    error: { code: 'NPM_CI_FAILED', message: 'npm ci failed (exit 1)', remedy: 'fix it', phase: 'install' },
    ...over,
  },
  evidence: evidence.map(e => ({ kind: 'npm' as const, ...e })),
})

const lines = (n: number, width: number, tag: string) => Array.from({ length: n }, (_, i) => `${tag} line ${String(i).padStart(6, '0')} ${'x'.repeat(width)}`).join('\n')
const bytes = (s: string) => Buffer.byteLength(s)

t.test('a report that fits is the report, unchanged', async t => {
  const r = run([{ source: 'npm ci stderr', text: 'npm error code 1' }])
  const { message, truncated } = fitReport(r)
  t.equal(message, JSON.stringify(r))
  t.equal(truncated, undefined)
  t.equal(MAX_EVENT_BYTES, 1_048_550, '1 MiB minus the 26 bytes PutLogEvents counts per event')
})

t.test('evidence first: the longest text loses lines from its start; the last lines and the record stay', async t => {
  const big = lines(3000, 80, 'big')
  const small = lines(20, 10, 'small')
  const r = run([{ source: 'npm ci stderr', text: big }, { source: 'npm ci stdout', text: small }])
  const limit = 100_000
  const { message, truncated } = fitReport(r, limit)
  t.ok(bytes(message) <= limit, `fits: ${bytes(message)} <= ${limit}`)
  const out = JSON.parse(message) as RunReport
  t.equal(out.evidence[1]?.text, small, 'the shorter evidence is whole')
  const kept = out.evidence[0]?.text ?? ''
  t.ok(big.endsWith(kept), 'what is left of the longest is its end')
  t.match(kept, /^big line \d{6} /, 'cut at a line start')
  t.ok(kept.includes('big line 002999'), 'the last line stays')
  t.same(out.run, r.run, 'the run record is whole')
  t.match(truncated, { originalBytes: bytes(JSON.stringify(r)), limitBytes: limit, cut: [/^evidence\[0\] \(npm ci stderr\): \d+ bytes from its start$/] })
  t.same(out.truncated, truncated, 'the report says how it was cut')
  t.same(r.evidence[0]?.text, big, 'the input is left as it was')
})

t.test('escaped characters count as what they cost in JSON', async t => {
  const control = '\u0001'.repeat(50_000)
  const r = run([{ source: 'service log', text: `${control}\nlast words` }])
  const { message } = fitReport(r, 60_000)
  t.ok(bytes(message) <= 60_000, `fits: ${bytes(message)}`)
  t.match((JSON.parse(message) as RunReport).evidence[0]?.text, /last words$/)
})

t.test('then the details, then the record: never dropped', async t => {
  const long = 'm'.repeat(50_000)
  const r = run([{ source: 'npm ci stderr', text: lines(100, 100, 'e') }], {
    error: { code: 'NPM_CI_FAILED', message: long, remedy: 'fix it', phase: 'install' },
    phases: [{ name: 'install', status: 'failed', durationMs: 5, detail: long }],
  })
  const details = fitReport(r, 20_000)
  t.ok(bytes(details.message) <= 20_000)
  const d = JSON.parse(details.message) as RunReport
  t.equal(d.evidence[0]?.text, '', 'all evidence went first')
  t.equal(d.run.error?.message.length, 1001, 'the message cut to its first 1,000 characters')
  t.equal(d.run.phases[0]?.detail?.length, 1001)
  t.match(details.truncated?.cut, [/evidence\[0\].*all of it/, /to their first 1000 characters/])

  const many = run([], { phases: Array.from({ length: 500 }, (_, i) => ({ name: `p${i}`, status: 'ok' as const, durationMs: 1, detail: 'd'.repeat(900) })) })
  const record = fitReport(many, 20_000)
  t.ok(bytes(record.message) <= 20_000)
  const m = JSON.parse(record.message) as RunReport
  t.match(m.run, { runId: 'r-1', outcome: 'failed', exitCode: 1, commit: 'a'.repeat(40), phases: [], error: { code: 'NPM_CI_FAILED', phase: 'install' } })
  t.match(record.truncated?.cut, [/first 1000 characters/, /all but its identifying fields/])
})

t.test('a drain report is cut the same way', async t => {
  const r: DrainReport = {
    schema: REPORT_SCHEMA, version: REPORT_VERSION, kind: 'drain', agentVersion: '0.1.0', instanceId: 'i-0abc', at: '2026-01-01T00:00:00.000Z',
    drain: { reason: 'terminated', trigger: 'x', startedAt: 'y', outcome: 'failed', steps: Array.from({ length: 100 }, () => ({ name: 'pre-stop', status: 'failed' as const, durationMs: 1, detail: 'z'.repeat(5000) })) },
    evidence: [],
  }
  const { message } = fitReport(r, 50_000)
  t.ok(bytes(message) <= 50_000)
  t.same((JSON.parse(message) as DrainReport).drain.steps, [], 'down to the record when the details are not enough')
})
