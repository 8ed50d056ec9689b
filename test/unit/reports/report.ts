import t from 'tap'
import { drainReport, parseReport, REPORT_SCHEMA, runReport, servingAfter } from '../../../agent/src/reports/report.js'
import type { RunState } from '../../../agent/src/run/state.js'
import { createScrubber } from '../../../agent/src/secrets/redact.js'

const SECRET = 'sk-live-5f1e2d3c4b5a'
const state = (): RunState => ({
  version: 1, runId: 'r-1', command: 'run', reason: 'boot', mode: 'aws', pid: 7, startedAt: '2026-01-01T00:00:00.000Z', outcome: 'failed', exitCode: 1,
  service: 'api', environment: 'prod', commit: 'b'.repeat(40), release: '20260101T000000Z-bbbbbbbbbbbb', previousRelease: '20251231T000000Z-aaaaaaaaaaaa',
  phases: [{ name: 'verify', status: 'failed', durationMs: 9, detail: `health check failed: key ${SECRET}` }, { name: 'rollback', status: 'ok', durationMs: 3 }, { name: 'complete', status: 'not-run', durationMs: 0 }],
  error: { code: 'HEALTH_FAILED', message: `boom ${SECRET}`, remedy: 'fix it', phase: 'verify' },
})

t.test('a run report: the state, the agent, the evidence, scrubbed; sent before the ABANDON it says so', async t => {
  const scrubber = createScrubber()
  scrubber.add([SECRET])
  const r = runReport({
    agentVersion: '0.1.0', instanceId: 'i-0abc', at: new Date('2026-01-01T00:01:00Z'), hookAfter: 'ABANDON', scrubber, state: state(),
    evidence: [{ kind: 'service-log', source: '/srv/api/logs/api-error.log', text: `Error: ${SECRET} refused` }],
    serving: { release: '20251231T000000Z-aaaaaaaaaaaa', commit: 'aaaaaaaaaaaa' },
  })
  t.match(r, { schema: REPORT_SCHEMA, version: 1, kind: 'run', agentVersion: '0.1.0', instanceId: 'i-0abc', service: 'api', environment: 'prod', at: '2026-01-01T00:01:00.000Z', hookAfter: 'ABANDON' })
  t.equal(r.run.commit, 'b'.repeat(40))
  t.match(r.run.phases[2], { name: 'complete', status: 'not-run', detail: 'ABANDON is sent after this report' })
  t.notOk(JSON.stringify(r).includes(SECRET), 'no secret value anywhere')
  t.equal(r.evidence[0]?.text, 'Error: [REDACTED] refused')
  t.equal(r.run.error?.message, 'boom [REDACTED]')
  const after = runReport({ agentVersion: '0.1.0', instanceId: 'i-0abc', at: new Date(), scrubber, state: state(), evidence: [], serving: undefined })
  t.equal(after.run.phases[2]?.detail, undefined, 'no hook to follow: the record as it is')
  t.notOk('serving' in after || 'hookAfter' in after, 'absent fields are left out')
})

t.test('what serves after the run', async t => {
  const release = { id: '20260101T000000Z-bbbbbbbbbbbb', commit: 'b'.repeat(40) }
  const live = '20251231T000000Z-aaaaaaaaaaaa'
  const base = { failed: false, warmPool: false, release, liveRelease: live, switched: true, rolledBack: false }
  t.same(servingAfter(base), { release: release.id, commit: release.commit }, 'success: the new release, whole commit')
  t.same(servingAfter({ ...base, failed: true, rolledBack: true }), { release: live, commit: 'aaaaaaaaaaaa' }, 'rolled back: the previous one, its id says the commit')
  t.equal(servingAfter({ ...base, failed: true, liveRelease: undefined }), undefined, 'a first release that failed: nothing')
  t.same(servingAfter({ ...base, failed: true, switched: false }), { release: live, commit: 'aaaaaaaaaaaa' }, 'failed before the switch: what was live')
  t.same(servingAfter({ ...base, failed: true, switched: false, liveRelease: release.id }), { release: release.id, commit: release.commit }, 'a re-run of the live commit')
  t.equal(servingAfter({ ...base, warmPool: true }), undefined, 'a warm-pool prepare starts nothing')
  t.equal(servingAfter({ ...base, failed: true, switched: false, liveRelease: 'not-an-id' }), undefined)
})

t.test('a drain report', async t => {
  const r = drainReport({
    agentVersion: '0.1.0', instanceId: 'i-0abc', at: new Date('2026-01-01T00:00:00Z'), hookAfter: 'CONTINUE', scrubber: createScrubber(),
    drain: { reason: 'terminated', trigger: 'target lifecycle state Terminated', startedAt: 'x', outcome: 'ok', steps: [] },
    watch: { targetState: 'Terminated' }, service: 'api', environment: 'prod',
  })
  t.match(r, { kind: 'drain', hookAfter: 'CONTINUE', targetState: 'Terminated', service: 'api', drain: { reason: 'terminated' }, evidence: [] })
})

t.test('reading back: reports of this version only; anything else in the group is skipped', async t => {
  const r = runReport({ agentVersion: '0.1.0', instanceId: 'i-0abc', at: new Date(), scrubber: createScrubber(), state: state(), evidence: [], serving: undefined })
  t.same(parseReport(JSON.stringify(r)), r)
  for (const other of ['not json', '[]', '{}', JSON.stringify({ ...r, version: 2 }), JSON.stringify({ ...r, schema: 'x' }), JSON.stringify({ ...r, kind: 'other' }),
    JSON.stringify({ ...r, run: { ...r.run, phases: 'x' } }), JSON.stringify({ ...r, instanceId: 5 }), JSON.stringify({ ...r, evidence: null })]) {
    t.equal(parseReport(other), undefined, other.slice(0, 40))
  }
})
