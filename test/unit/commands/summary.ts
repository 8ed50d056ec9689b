import t from 'tap'
import { formatSummary } from '../../../agent/src/commands/summary.js'
import type { RunState } from '../../../agent/src/run/state.js'

const state = (over: Partial<RunState> = {}): RunState => ({
  version: 1, runId: 'r', command: 'run', reason: 'boot', mode: 'aws', pid: 1, startedAt: '2026-11-24T05:00:00.000Z',
  outcome: 'success', exitCode: 0, service: 'app', commit: 'c'.repeat(40), phases: [{ name: 'start', status: 'ok', durationMs: 12, detail: 'app started' }],
  ...over,
})

t.test('a normal run has no warm pool row', async t => {
  const out = formatSummary(state({ url: 'http://127.0.0.1:3000/health' }))
  t.match(out, /outcome\s+success \(exit 0\)/)
  t.match(out, /url\s+http:\/\/127\.0\.0\.1:3000\/health/)
  t.notMatch(out, /warm pool/)
  t.match(out, /start\s+ok\s+12 ms\s+app started/)
})

t.test('a warm-pool run never reads as serving', async t => {
  const table: [RunState['outcome'], RegExp][] = [
    ['prepared', /warm pool\s+Warmed:Stopped: prepared, not started \(starts when the instance leaves the pool\)/],
    ['running', /warm pool\s+Warmed:Stopped: preparing, nothing started/],
    ['failed', /warm pool\s+Warmed:Stopped: prepare failed, nothing started/],
  ]
  for (const [outcome, want] of table) {
    const out = formatSummary(state({ outcome, warmPool: 'Warmed:Stopped' }))
    t.match(out, want, outcome)
    t.match(out, new RegExp(`outcome\\s+${outcome}`))
    t.notMatch(out, /\n\s+url\s/, 'no url row')
  }
})
