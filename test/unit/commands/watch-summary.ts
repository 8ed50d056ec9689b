import t from 'tap'
import { formatWatch } from '../../../agent/src/commands/watch-summary.js'
import type { WatchState } from '../../../agent/src/watch/state.js'

const base: WatchState = {
  version: 1, pid: 4242, bootId: 'b', startedAt: '2026-01-01T00:00:00.000Z', lastPollAt: '2026-01-01T00:05:00.000Z',
  imds: { ok: true, consecutiveFailures: 0 }, targetState: 'InService', runs: [],
}

t.test('a quiet watch', async t => {
  const text = formatWatch(base, true)
  t.match(text, /watch\s+running \(pid 4242\)/)
  t.match(text, /watching since\s+2026-01-01T00:00:00.000Z/)
  t.match(text, /last poll\s+2026-01-01T00:05:00.000Z, IMDS ok/)
  t.match(text, /target state\s+InService/)
  t.match(text, /spot notice\s+none/)
  t.notMatch(text, /drain/)
  t.match(formatWatch({ ...base, targetState: null, lastPollAt: undefined }, false), /not running \(pid 4242 is gone\)[^]*last poll\s+none yet[^]*target state\s+none \(not in an Auto Scaling group\)/)
  t.match(formatWatch({ ...base, imds: { ok: false, consecutiveFailures: 3, error: 'ECONNREFUSED' } }, true), /IMDS not answering \(3 failed polls: ECONNREFUSED\)/)
})

t.test('a drain, its steps and the hook', async t => {
  const text = formatWatch({
    ...base,
    targetState: 'Terminated',
    spotNotice: { action: 'terminate', time: '2026-01-01T00:07:00Z', seenAt: '2026-01-01T00:05:00.000Z' },
    runs: [{ reason: 'warm-pool', startedAt: '2026-01-01T00:01:00.000Z', exitCode: 0 }],
    drain: {
      reason: 'spot-interruption', trigger: 'spot instance-action terminate at 2026-01-01T00:07:00Z', startedAt: '2026-01-01T00:05:00.000Z',
      finishedAt: '2026-01-01T00:05:12.000Z', durationMs: 12_000, outcome: 'failed',
      steps: [{ name: 'pre-stop', status: 'failed', durationMs: 40, detail: 'exited 3' }, { name: 'stop', status: 'ok', durationMs: 11_500 }],
    },
    hook: { outcome: 'not-applicable', detail: 'asg web, nothing to complete (InService)', at: '2026-01-01T00:05:12.000Z', answered: false },
  }, true)
  t.match(text, /spot notice\s+terminate at 2026-01-01T00:07:00Z \(seen 2026-01-01T00:05:00.000Z\)/)
  t.match(text, /run \(warm-pool\)\s+started 2026-01-01T00:01:00.000Z, exit 0/)
  t.match(text, /drain\s+failed \(spot-interruption: spot instance-action terminate/)
  t.match(text, /finished 2026-01-01T00:05:12.000Z \(12.0 s\)/)
  t.match(text, /pre-stop\s+failed\s+40 ms\s+exited 3/)
  t.match(text, /stop\s+ok\s+11.5 s/)
  t.match(text, /terminating hook\s+not-applicable \(asked again at the next poll\): asg web/)
})
