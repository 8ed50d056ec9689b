import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { acquireLock, breakStaleLock, parseStartTicks, readLockHolder } from '../../../agent/src/run/lock.js'
import { ExitCode, LockHeldError, isAgentError } from '../../../agent/src/core/errors.js'

const info = { reason: 'test', command: 'bootstrap-agent run --reason test' }
const bootId = async () => (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim()
const ownTicks = async () => parseStartTicks(await readFile(`/proc/${process.pid}/stat`, 'utf8')) ?? ''

const holder = async (over: Record<string, unknown>) => ({
  pid: process.pid,
  bootId: await bootId(),
  startTicks: await ownTicks(),
  startedAt: '2026-11-24T02:15:00.000Z',
  reason: 'boot',
  command: 'bootstrap-agent run --reason boot',
  hostname: 'ip-10-0-0-1',
  nonce: 'someone-else',
  ...over,
})

const writeLock = async (path: string, over: Record<string, unknown>) =>
  writeFile(path, JSON.stringify(await holder(over)))

/** Only leftovers would show here: temp and stale files must all be gone. */
const siblings = async (dir: string) => (await readdir(dir)).filter((n) => n !== 'lock')

// This test starts a child process on purpose: `true` exits at once, leaving a pid known dead.
const deadPid = async () => {
  const child = spawn('true')
  await once(child, 'exit')
  if (child.pid === undefined) throw new Error('could not spawn `true`')
  return child.pid
}

// Also on purpose: a live process that is not this one, killed at the end of the test.
const liveProcess = async (t: Test) => {
  const child = spawn('sleep', ['600'], { stdio: 'ignore' })
  t.teardown(() => void child.kill('SIGKILL'))
  await once(child, 'spawn')
  const pid = child.pid ?? 0
  // the exec of `sleep` has happened once its cmdline says so
  for (let cmdline = ''; !cmdline.startsWith('sleep'); cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')) await new Promise(r => setImmediate(r))
  return {
    pid,
    startTicks: parseStartTicks(await readFile(`/proc/${pid}/stat`, 'utf8')) ?? '',
    cmdlineSha256: createHash('sha256').update(await readFile(`/proc/${pid}/cmdline`)).digest('hex'),
  }
}
const OTHER_BOOT = '00000000-0000-0000-0000-000000000000'

t.test('parseStartTicks counts fields after the last paren of comm', async (t) => {
  const tail = 'S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20 21'
  t.equal(parseStartTicks(`42 (node) ${tail}`), '987654')
  t.equal(parseStartTicks(`42 (a) b (c) d) ${tail}`), '987654', 'comm with spaces and parens')
  t.equal(parseStartTicks('42 node S 1'), undefined, 'no paren')
  t.equal(parseStartTicks('42 (node) S 1 2'), undefined, 'too short')
})

t.test('acquire writes our holder, release removes it', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'nested', 'lock')
  const lock = await acquireLock(path, info)
  t.equal(lock.brokeStale, undefined)
  const st = await stat(join(dir, 'nested'))
  t.ok(st.isDirectory() && (st.mode & 0o022) === 0, 'parent dir created, writable by owner only')
  const h = await readLockHolder(path)
  t.match(h, { pid: process.pid, bootId: await bootId(), startTicks: await ownTicks(), ...info })
  t.notOk(h && 'nonce' in h, 'the nonce stays internal')
  t.same(await siblings(join(dir, 'nested')), [], 'no temp file left')
  await lock.release()
  t.equal(await readLockHolder(path), undefined)
  await lock.release() // idempotent
})

t.test('second acquire while held fails with exit 3 and names the holder', async (t) => {
  const path = join(t.testdir(), 'lock')
  const lock = await acquireLock(path, info)
  const err = await acquireLock(path, { reason: 'ssm', command: 'x' }).catch((e: unknown) => e)
  t.ok(err instanceof LockHeldError)
  if (!(err instanceof LockHeldError)) return
  t.equal(err.exitCode, ExitCode.locked)
  t.equal(err.exitCode, 3)
  t.match(err.message, `pid ${process.pid}`)
  t.match(err.message, info.command)
  t.match(err.remedy, `remove ${path}`)
  t.match(err.remedy, 'bootstrap-agent status')
  t.same(await siblings(join(path, '..')), [], 'the loser left no temp file')
  await lock.release()
})

t.test('stale holders are broken and reported', async (t) => {
  const cases: [string, () => Promise<Record<string, unknown>>, RegExp][] = [
    ['dead pid', async () => ({ pid: await deadPid() }), /no longer running/],
    ['pid reused (our pid, other start time)', async () => ({ startTicks: '1' }), /pid reused/],
    ['dead pid, another boot id', async () => ({ pid: await deadPid(), bootId: OTHER_BOOT }), /^it was taken before the last reboot \(pid \d+ is no longer running\)$/],
    ['our pid and start time, a lock we did not take (an earlier boot)', async () => ({ bootId: OTHER_BOOT }), /before the last reboot \(pid \d+ is now this process, which did not take it\)/],
  ]
  for (const [name, over, reason] of cases) {
    t.test(name, async (t) => {
      const path = join(t.testdir(), 'lock')
      const o = await over()
      await writeLock(path, o)
      const lock = await acquireLock(path, info)
      t.match(lock.brokeStale, { ...o, reason: 'boot', hostname: 'ip-10-0-0-1' })
      t.notOk(lock.brokeStale && 'nonce' in lock.brokeStale)
      t.match(lock.staleReason, reason)
      t.match(await readLockHolder(path), { pid: process.pid, reason: 'test' }, 'now ours')
      t.same(await siblings(join(path, '..')), [], 'stale file deleted')
      await lock.release()
    })
  }
})

t.test('another boot id but a live holder (another view of this boot, e.g. a sandboxed unit under nspawn): held', async (t) => {
  const path = join(t.testdir(), 'lock')
  const live = await liveProcess(t)
  await writeLock(path, { ...live, bootId: OTHER_BOOT })
  t.match(await readLockHolder(path), { pid: live.pid, bootId: OTHER_BOOT }, 'status sees it running')
  const err = await acquireLock(path, info).catch((e: unknown) => e)
  t.ok(err instanceof LockHeldError, 'a second run does not break it')
  t.match(String(err), `pid ${live.pid}`)
  await writeLock(path, { ...live })
  t.match(await readLockHolder(path), { pid: live.pid }, 'a lock without a command line fingerprint (an older agent) is judged by pid and start time')
})

t.test('a live pid with the same start time that runs another program: stale', async (t) => {
  const path = join(t.testdir(), 'lock')
  const live = await liveProcess(t)
  await writeLock(path, { ...live, cmdlineSha256: '0'.repeat(64), bootId: OTHER_BOOT })
  t.equal(await readLockHolder(path), undefined)
  const lock = await acquireLock(path, info)
  t.match(lock.staleReason, /before the last reboot \(pid \d+ now runs another program \(pid reused\)\)/)
  t.match(await readLockHolder(path), { pid: process.pid, cmdlineSha256: /^[0-9a-f]{64}$/ }, 'ours records our command line fingerprint')
  await lock.release()
})

t.test('unreadable lock: left alone while fresh, broken once old', async (t) => {
  const path = join(t.testdir(), 'lock')
  await writeFile(path, '{"pid": ')
  const err = await acquireLock(path, info).catch((e: unknown) => e)
  t.ok(err instanceof LockHeldError, 'fresh: may be a hand edit in progress')
  t.match(String(err), 'unreadable')
  const old = new Date(Date.now() - 60_000)
  await utimes(path, old, old)
  const lock = await acquireLock(path, info)
  t.equal(lock.brokeStale, undefined, 'no holder to report')
  t.match(lock.staleReason, /unreadable/)
  await lock.release()
})

t.test('a pid <= 0 is never probed: the file counts as unreadable', async (t) => {
  const path = join(t.testdir(), 'lock')
  await writeLock(path, { pid: -1 })
  t.equal(await readLockHolder(path), undefined)
  await t.rejects(acquireLock(path, info), LockHeldError)
})

t.test('files that are not a holder read as no holder', async (t) => {
  const path = join(t.testdir(), 'lock')
  const { nonce: _n, ...noNonce } = await holder({})
  const fractionalPid = await holder({ pid: 1.5 })
  for (const content of ['null', '[]', '"lock"', JSON.stringify(noNonce), JSON.stringify(fractionalPid)]) {
    await writeFile(path, content)
    t.equal(await readLockHolder(path), undefined, content)
  }
  t.equal(await readLockHolder(join(path, '..', 'missing')), undefined, 'no lock file')
})

t.test('filesystem trouble is an AgentError, not a held lock', async (t) => {
  const dir = t.testdir({ file: 'x', lockdir: {} })
  for (const path of [join(dir, 'file', 'lock'), join(dir, 'lockdir')]) {
    const err = await acquireLock(path, info).catch((e: unknown) => e)
    t.ok(isAgentError(err) && !(err instanceof LockHeldError), path)
    t.match(err, { code: 'LOCK_IO', exitCode: ExitCode.failed })
  }
})

t.test('release leaves a lock that is no longer ours', async (t) => {
  const path = join(t.testdir(), 'lock')
  const lock = await acquireLock(path, info)
  await writeLock(path, {}) // same pid and start time, another nonce: someone else's lock
  await lock.release()
  t.match(JSON.parse(await readFile(path, 'utf8')), { nonce: 'someone-else' }, 'still there')
})

t.test('two concurrent acquires in one process: exactly one wins', async (t) => {
  const path = join(t.testdir(), 'lock')
  const results = await Promise.allSettled([acquireLock(path, info), acquireLock(path, info)])
  const won = results.filter((r) => r.status === 'fulfilled')
  const lost = results.filter((r) => r.status === 'rejected')
  t.equal(won.length, 1)
  t.equal(lost.length, 1)
  t.ok(lost[0]?.status === 'rejected' && lost[0].reason instanceof LockHeldError)
  for (const r of won) await r.value.release()
  t.same(await readdir(join(path, '..')), [])
})

t.test('breaking a lock that a racing run took meanwhile puts it back', async (t) => {
  const path = join(t.testdir(), 'lock')
  await writeLock(path, { nonce: 'racer', reason: 'ssm' })
  const racer = await readFile(path, 'utf8')
  // we judged some other (stale) content, but the file now holds the racer's live lock
  const err = await breakStaleLock(path, '{"judged":"stale"}').catch((e: unknown) => e)
  t.ok(err instanceof LockHeldError)
  t.match(String(err), `pid ${process.pid}`)
  t.equal(await readFile(path, 'utf8'), racer, 'restored byte for byte')
  t.same(await siblings(join(path, '..')), [])
  t.equal(await breakStaleLock(join(path, '..', 'none'), 'x'), false, 'already gone')
})
