import t from 'tap'
import { failureText, formatSummary } from '../../../agent/src/commands/summary.js'
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

t.test("a failure's last line is its verdict, also when the message spans lines", async t => {
  const one = failureText('failed', { code: 'GIT_AUTH_FAILED', message: 'the token was refused', remedy: 'check the credential secret' })
  t.equal(one, 'bootstrap-agent: failed [GIT_AUTH_FAILED]: the token was refused\n  what to do: check the credential secret\n')
  const tail = failureText('rolled-back', { code: 'HEALTH_FAILED', message: 'health check of "app" failed: PM2 reports it errored\n--- app-error.log\nfatal', remedy: 'fix the service' })
  const lines = tail.trimEnd().split('\n')
  t.equal(lines[0], 'bootstrap-agent: rolled-back [HEALTH_FAILED]: health check of "app" failed: PM2 reports it errored')
  t.equal(lines[3], '  what to do: fix the service')
  t.equal(lines.at(-1), 'bootstrap-agent: rolled-back [HEALTH_FAILED]: health check of "app" failed: PM2 reports it errored (details above)')
})

t.test('the release cache: where the release and the commit came from, and the publication', async t => {
  const none = formatSummary(state())
  t.notMatch(none, /release from|release cache|cache publish|commit from/, 'no rows without a cache or a release')
  const hit = formatSummary(state({
    releaseFrom: 'cache',
    cache: { location: 's3://fleet/releases/prod', lookup: 'hit: s3://fleet/releases/prod/app/index/c/r.json', commitFromPointer: 'branch pointer s3://fleet/x.json (published 2026-12-01); the git remote could not be reached: refused', published: 'release 1 came from the release cache' },
  }))
  t.match(hit, /release from\s+the release cache \(no clone, npm ci or build\)/)
  t.match(hit, /commit from\s+branch pointer s3:\/\/fleet\/x\.json/)
  t.match(hit, /release cache\s+s3:\/\/fleet\/releases\/prod: hit: s3:\/\/fleet\/releases\/prod\/app\/index\/c\/r\.json/)
  t.match(hit, /cache publish\s+release 1 came from the release cache/)
  t.match(formatSummary(state({ releaseFrom: 'source', cache: { location: 's3://fleet/p', published: 'published s3://fleet/p/app/index/x.json' } })), /release from\s+source \(clone, npm ci, build\)[^]*release cache\s+s3:\/\/fleet\/p\n[^]*cache publish\s+published/)
  t.match(formatSummary(state({ releaseFrom: 'live' })), /release from\s+the live release \(commit unchanged\)/)
})
