import t from 'tap'
import { formatFleet, formatHistory, formatReport } from '../../../agent/src/commands/report-output.js'
import type { FleetView } from '../../../agent/src/operator/fleet.js'
import { REPORT_SCHEMA, type DrainReport, type RunReport } from '../../../agent/src/reports/report.js'

const runReport: RunReport = {
  schema: REPORT_SCHEMA, version: 1, kind: 'run', agentVersion: '0.1.0', instanceId: 'i-0abc', service: 'api', environment: 'prod', at: '2026-01-01T00:02:00.000Z', hookAfter: 'ABANDON',
  run: {
    version: 1, runId: 'r-1', command: 'run', reason: 'boot', mode: 'aws', pid: 1, startedAt: '2026-01-01T00:00:00.000Z', outcome: 'rolled-back', exitCode: 1, service: 'api', commit: 'b'.repeat(40),
    phases: [{ name: 'verify', status: 'failed', durationMs: 8000, detail: 'health check failed' }],
    error: { code: 'HEALTH_FAILED', message: 'health check failed', remedy: 'fix the service', phase: 'verify' },
  },
  serving: { release: '20251231T000000Z-aaaaaaaaaaaa', commit: 'aaaaaaaaaaaa' },
  evidence: [{ kind: 'service-log', source: '/srv/api/logs/api-error.log', text: 'Error: listen EADDRINUSE\n\u001b[2Jat server.js:3' }],
  truncated: { originalBytes: 2_000_000, limitBytes: 1_048_550, cut: ['evidence[0] (x): 951450 bytes from its start'] },
}

t.test('history: one row per run, newest first as given, and the footer', async t => {
  const out = formatHistory([
    { time: '2026-01-01T00:00:00.000Z', instanceId: 'i-0abc', kind: 'run', runId: '1240f866-cec2-4445', reason: 'boot', commit: 'b'.repeat(40), outcome: 'rolled-back', failedPhase: 'verify', errorCode: 'HEALTH_FAILED' },
    { time: '2025-12-31T00:00:00.000Z', instanceId: 'i-0abc', kind: 'drain', reason: 'drain (terminated)', outcome: 'ok' },
  ], '2 report(s)')
  t.equal(out, [
    '  time                  instance  run       reason              commit        outcome      failed phase  error',
    '  2026-01-01 00:00:00Z  i-0abc    1240f866  boot                bbbbbbbbbbbb  rolled-back  verify        HEALTH_FAILED',
    '  2025-12-31 00:00:00Z  i-0abc              drain (terminated)                ok',
    '',
    '  2 report(s)',
    '',
  ].join('\n'))
})

t.test('one whole report: the record, what serves, the evidence (made printable), the cut', async t => {
  const out = formatReport(runReport)
  t.match(out, /^ {2}run report of i-0abc, made 2026-01-01T00:02:00.000Z by agent 0.1.0 \(sent before its ABANDON\)\n/)
  t.match(out, /outcome\s+rolled-back \(exit 1\)/)
  t.match(out, /verify\s+failed\s+8000 ms\s+health check failed/)
  t.match(out, /error: \[HEALTH_FAILED\] health check failed\n\s+remedy: fix the service/)
  t.match(out, /serving\s+20251231T000000Z-aaaaaaaaaaaa \(commit aaaaaaaaaaaa\)/)
  t.match(out, /evidence: service-log, \/srv\/api\/logs\/api-error.log\n {4}\| Error: listen EADDRINUSE\n {4}\| \\u001b\[2Jat server.js:3/)
  t.match(out, /cut to fit one CloudWatch Logs event \(2000000 bytes\): evidence\[0\]/)
  t.notOk(out.includes('\u001b'), 'no escape character reaches the terminal')
  const { serving: _serving, ...nothingServes } = runReport
  const none = formatReport({ ...nothingServes, evidence: [] })
  t.match(none, /serving\s+nothing \(no release was left running\)/)
  const drain: DrainReport = {
    schema: REPORT_SCHEMA, version: 1, kind: 'drain', agentVersion: '0.1.0', instanceId: 'i-0abc', at: 'x',
    drain: { reason: 'terminated', trigger: 'target lifecycle state Terminated', startedAt: 'y', outcome: 'ok', steps: [{ name: 'stop', status: 'ok', durationMs: 5 }] }, evidence: [],
  }
  t.match(formatReport(drain), /drain report of i-0abc[^]*drain\s+ok \(terminated: target lifecycle state Terminated\)[^]*stop\s+ok\s+5 ms/)
})

t.test('fleet: the table, then all the same or the drift', async t => {
  const v: FleetView = {
    instances: [
      { instanceId: 'i-1', state: 'running', group: 'api-prod', lifecycleState: 'InService', health: 'Healthy', lastRun: { runId: 'r', at: 'x', ageMs: 3 * 3_600_000, reason: 'boot', outcome: 'success', commit: 'a'.repeat(40), serving: { release: 'x', commit: 'a'.repeat(40) } } },
      { instanceId: 'i-2', state: 'running', lastRun: { runId: 'r', at: 'x', ageMs: 90_000, reason: 'ssm', outcome: 'failed', commit: 'b'.repeat(40), errorCode: 'NPM_CI_FAILED' } },
      { instanceId: 'i-3', state: 'pending', note: 'no run report' },
    ],
    serving: [{ commit: 'aaaaaaaaaaaa', instances: ['i-1'] }, { commit: 'none', instances: ['i-2'] }, { commit: 'unknown', instances: ['i-3'] }],
  }
  const out = formatFleet(v, 'api (prod)')
  t.match(out, /instance\s+state\s+group\s+lifecycle\s+health\s+last run\s+reason\s+outcome\s+commit\s+serving\n/)
  t.match(out, /i-1\s+running\s+api-prod\s+InService\s+Healthy\s+3 h ago\s+boot\s+success\s+aaaaaaaaaaaa\s+aaaaaaaaaaaa\n/)
  t.match(out, /i-2\s+running\s+-\s+-\s+-\s+1 min ago\s+ssm\s+failed \[NPM_CI_FAILED\]\s+bbbbbbbbbbbb\s+nothing\n/)
  t.match(out, /i-3\s+pending\s+-\s+-\s+-\s+no run report\n/)
  t.match(out, /api \(prod\): DRIFT, 3 different commits serve: aaaaaaaaaaaa on 1, none on 1, unknown on 1/)
  t.match(formatFleet({ instances: v.instances.slice(0, 1), serving: v.serving.slice(0, 1) }, 'api (prod)'), /api \(prod\): all 1 instance\(s\) serve aaaaaaaaaaaa\n/)
  t.match(formatFleet({ instances: [], serving: [] }, 'api (prod)'), /no instance of api \(prod\)/)
})
