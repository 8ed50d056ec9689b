import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import t from 'tap'
import { statusCommand } from '../../../agent/src/commands/status.js'
import { acquireLock } from '../../../agent/src/run/lock.js'
import { watchLockFilePath, watchStateFilePath, writeWatchState, type WatchState } from '../../../agent/src/watch/state.js'

const capture = async (root: string, json: boolean): Promise<string> => {
  const out = new PassThrough()
  let text = ''
  out.on('data', c => (text += c))
  t.equal(await statusCommand(root, json, out), 0)
  return text
}

const watch: WatchState = {
  version: 1, pid: process.pid, bootId: 'b', startedAt: '2026-01-01T00:00:00.000Z', lastPollAt: '2026-01-01T00:00:05.000Z',
  imds: { ok: true, consecutiveFailures: 0 }, targetState: 'Terminated', runs: [],
  drain: { reason: 'terminated', trigger: 'target lifecycle state Terminated', startedAt: '2026-01-01T00:00:05.000Z', outcome: 'running', steps: [{ name: 'stop-run', status: 'skipped', durationMs: 1 }] },
}

t.test('no run yet, no watch: says so', async t => {
  const root = mkdtempSync(join(tmpdir(), 'status-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  t.match(await capture(root, false), /no run recorded yet under/)
  t.same(JSON.parse(await capture(root, true)), { state: null, runInProgress: null, interrupted: false, watch: null })
})

t.test('a watch mid-drain: shown with its steps, running while its lock is held', async t => {
  const root = mkdtempSync(join(tmpdir(), 'status-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  await writeWatchState(watchStateFilePath(root), watch)
  t.match(await capture(root, false), /no run recorded yet[^]*watch\s+not running \(pid \d+ is gone\)[^]*drain\s+running \(terminated: target lifecycle state Terminated\)[^]*stop-run\s+skipped/)
  const lock = await acquireLock(watchLockFilePath(root), { reason: 'watch', command: 'watch' })
  t.teardown(() => lock.release())
  const j = JSON.parse(await capture(root, true)) as { watch: { running: boolean; drain: { outcome: string } } }
  t.match(j.watch, { running: true, drain: { outcome: 'running' } })
  t.match(await capture(root, false), /watch\s+running \(pid \d+\)/)
})
