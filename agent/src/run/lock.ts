/**
 * One run at a time. The lock file is created atomically *with its content*: the holder is written
 * to a temp file which is then link(2)ed into place, and link fails with EEXIST when the lock is
 * held, so no reader ever sees a half-written holder. A holder that is provably gone (a dead pid,
 * a pid reused by another process, a pid that is now this very run's) is broken; a live one fails
 * the run with LockHeldError (exit 3).
 *
 * Who the holder is: its pid, that process's start time and its command line, all read from
 * /proc, which every process of a boot sees alike. The boot id is only a hint (it words the
 * reason as "before the last reboot"), never a verdict: processes of one boot can read different
 * boot ids. Under systemd-nspawn, a unit with ProtectKernelTunables=yes (the agent's and the
 * watch's) reads the kernel's /proc/sys/kernel/random/boot_id while an unsandboxed process (an
 * SSM run, `status`) reads the container's; judged by boot id, each would take the other's live
 * lock for a leftover, break it, and report a running watch as gone. After a real reboot, a
 * leftover's pid is dead, or belongs to a process started at another time or running another
 * program, or is the new run's own.
 */
import { createHash, randomBytes } from 'node:crypto'
import { link, lstat, mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises'
import { hostname } from 'node:os'
import { dirname } from 'node:path'
import { AgentError, LockHeldError, errnoCode, messageOf } from '../core/errors.js'
import { parseJsonObject } from '../core/json-object.js'

export interface LockHolder {
  pid: number
  /** a hint only (see above) */
  bootId: string
  /** start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat) */
  startTicks: string
  /** sha256 of /proc/<pid>/cmdline when the lock was taken; absent in locks of older agents */
  cmdlineSha256?: string
  startedAt: string
  reason: string
  command: string
  hostname: string
}

export interface AcquiredLock {
  release(): Promise<void>
  /** the dead run whose lock was broken to take this one, for the caller to log */
  brokeStale?: LockHolder
  /** why the broken lock was judged stale (also set for an unreadable lock, which has no holder) */
  staleReason?: string
}

/** What we store: the holder plus a nonce, so `release` never removes a lock that is not ours
 * even if pid and start time were to match (another container sharing the directory). */
interface StoredHolder extends LockHolder {
  nonce: string
}

type Seen = { raw: string; holder?: StoredHolder; mtimeMs: number }

/** An unreadable lock younger than this may be someone's hand edit in progress: leave it alone. */
const CORRUPT_GRACE_MS = 5_000
/** Bounds the loop when the lock keeps changing hands under us (taken, released, taken again). */
const MAX_ATTEMPTS = 5

const randomHex = () => randomBytes(6).toString('hex')

const ioError = (what: string, path: string, e: unknown) =>
  new AgentError(`cannot ${what} lock ${path}: ${messageOf(e)}`, {
    code: 'LOCK_IO',
    remedy: `run the agent as root and check that ${dirname(path)} is a writable directory`,
    cause: e,
  })

/**
 * Field 22 (starttime) of /proc/<pid>/stat. The comm field (2) may itself contain spaces and
 * parentheses, so fields are counted from after the LAST ')'; there, index 0 is field 3.
 */
export const parseStartTicks = (stat: string): string | undefined => {
  const end = stat.lastIndexOf(')')
  if (end < 0) return undefined
  const ticks = stat.slice(end + 2).split(' ')[22 - 3]
  return ticks !== undefined && /^\d+$/.test(ticks) ? ticks : undefined
}

/** Undefined when it cannot be told: no /proc (a laptop in local mode), or the process just exited,
 * which the caller treats as "maybe alive"; the next run will see it dead. */
const startTicksOf = async (pid: number): Promise<string | undefined> => {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined)
  return stat === undefined ? undefined : parseStartTicks(stat)
}

/** Undefined when it cannot be told (no /proc, the process just exited). */
const cmdlineSha256Of = async (pid: number): Promise<string | undefined> => {
  const cmdline = await readFile(`/proc/${pid}/cmdline`).catch(() => undefined)
  return cmdline === undefined ? undefined : createHash('sha256').update(cmdline).digest('hex')
}

const currentBootId = async (): Promise<string> =>
  (await readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => '')).trim()

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    // EPERM: it exists but belongs to another user. Anything else: cannot tell, so assume alive
    // rather than break a lock that may be live.
    return errnoCode(e) !== 'ESRCH'
  }
}

const parseHolder = (raw: string): StoredHolder | undefined => {
  const o = parseJsonObject(raw)
  if (!o) return undefined
  const s = (k: string): string | undefined => {
    const x = o[k]
    return typeof x === 'string' ? x : undefined
  }
  const [bootId, startTicks, cmdlineSha256, startedAt, reason, command, host, nonce] = [
    s('bootId'), s('startTicks'), s('cmdlineSha256'), s('startedAt'), s('reason'), s('command'), s('hostname'), s('nonce'),
  ]
  const pid = o.pid
  // pid must be a positive integer: kill(0 or -n, 0) would probe a whole process group.
  if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid <= 0) return undefined
  if (bootId === undefined || startTicks === undefined || startedAt === undefined) return undefined
  if (reason === undefined || command === undefined || host === undefined || nonce === undefined) {
    return undefined
  }
  return { pid, bootId, startTicks, ...(cmdlineSha256 === undefined ? {} : { cmdlineSha256 }), startedAt, reason, command, hostname: host, nonce }
}

const publicHolder = ({ nonce: _nonce, ...h }: StoredHolder): LockHolder => h

/** The lock as it is now, or undefined when there is none. */
const observe = async (path: string): Promise<Seen | undefined> => {
  try {
    const [raw, st] = await Promise.all([readFile(path, 'utf8'), lstat(path)])
    return { raw, holder: parseHolder(raw), mtimeMs: st.mtimeMs }
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return undefined
    throw ioError('read', path, e)
  }
}

/** Nonces of the locks this process holds: a lock naming our pid and start time that is not
 * among them was taken by an earlier boot's process that happened to get both. */
const ownNonces = new Set<string>()

/** Why the lock is stale, or undefined while its holder may still be running. */
const staleReason = async (seen: Seen): Promise<string | undefined> => {
  const h = seen.holder
  if (!h) {
    const age = Date.now() - seen.mtimeMs
    if (age <= CORRUPT_GRACE_MS) return undefined
    return `the lock file is unreadable and ${Math.round(age / 1000)}s old`
  }
  const bootId = await currentBootId()
  const hint = (why: string) => (h.bootId && bootId && h.bootId !== bootId ? `it was taken before the last reboot (${why})` : why)
  if (!isAlive(h.pid)) return hint(`pid ${h.pid} is no longer running`)
  const ticks = await startTicksOf(h.pid)
  if (ticks !== undefined && h.startTicks && ticks !== h.startTicks) return hint(`pid ${h.pid} now belongs to another process (pid reused)`)
  const cmdline = await cmdlineSha256Of(h.pid)
  if (cmdline !== undefined && h.cmdlineSha256 && cmdline !== h.cmdlineSha256) return hint(`pid ${h.pid} now runs another program (pid reused)`)
  if (h.pid === process.pid && !ownNonces.has(h.nonce)) return hint(`pid ${h.pid} is now this process, which did not take it`)
  return undefined
}

const heldError = (path: string, seen: Seen | undefined, note = ''): LockHeldError => {
  const h = seen?.holder
  const who = h
    ? `pid ${h.pid} on ${h.hostname} ("${h.command}", reason: ${h.reason}) since ${h.startedAt}`
    : seen
      ? 'an unreadable holder (the file is not a lock written by this agent)'
      : 'a run that released it again while we looked'
  return new LockHeldError(
    `another run holds the lock ${path}: ${who}${note}`,
    `wait for it to finish or check \`bootstrap-agent status\`; if you are sure it is dead, remove ${path}`,
  )
}

/** Creates the lock with our holder in it; false when it is already held. */
const tryCreate = async (path: string, raw: string): Promise<boolean> => {
  const tmp = `${path}.tmp-${process.pid}-${randomHex()}`
  try {
    await writeFile(tmp, raw, { flag: 'wx', mode: 0o644 })
    await link(tmp, path)
    return true
  } catch (e) {
    if (errnoCode(e) === 'EEXIST') return false
    throw ioError('create', path, e)
  } finally {
    await unlink(tmp).catch(() => undefined)
  }
}

/**
 * Moves the stale lock (whose content was `judgedRaw`) aside and deletes it. rename is atomic, so
 * of several runs breaking the same lock only one gets it; re-reading what we renamed tells us
 * whether it was still the stale holder or a racing run's fresh lock, which we then put back.
 * Returns false when the lock vanished before we could move it (released or broken by another run).
 */
export const breakStaleLock = async (path: string, judgedRaw: string): Promise<boolean> => {
  const aside = `${path}.stale-${randomHex()}`
  try {
    await rename(path, aside)
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return false
    throw ioError('break', path, e)
  }
  const raw = await readFile(aside, 'utf8').catch(() => undefined)
  if (raw !== judgedRaw) {
    // EEXIST here means yet another run took the lock meanwhile; it is held either way.
    await link(aside, path).catch(() => undefined)
    await unlink(aside).catch(() => undefined)
    const now = raw === undefined ? undefined : { raw, holder: parseHolder(raw), mtimeMs: Date.now() }
    throw heldError(path, now, ' (it took the lock while a stale one was being broken)')
  }
  await unlink(aside)
  return true
}

const releaser = (path: string, me: StoredHolder) => {
  let released = false
  return async () => {
    if (released) return
    released = true
    const seen = await observe(path)
    const h = seen?.holder
    // Ours only if the nonce matches: after our lock was (wrongly) broken, the file is someone else's.
    ownNonces.delete(me.nonce)
    if (!h || h.nonce !== me.nonce || h.pid !== me.pid || h.startTicks !== me.startTicks) return
    await unlink(path).catch((e: unknown) => {
      if (errnoCode(e) !== 'ENOENT') throw ioError('release', path, e)
    })
  }
}

export const acquireLock = async (
  path: string,
  info: { reason: string; command: string },
): Promise<AcquiredLock> => {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 }).catch((e: unknown) => {
    throw ioError('create the directory of', path, e)
  })
  const me: StoredHolder = {
    pid: process.pid,
    bootId: await currentBootId(),
    startTicks: (await startTicksOf(process.pid)) ?? '',
    ...await cmdlineSha256Of(process.pid).then(c => (c === undefined ? {} : { cmdlineSha256: c })),
    startedAt: new Date().toISOString(),
    reason: info.reason,
    command: info.command,
    hostname: hostname(),
    nonce: randomHex(),
  }
  const raw = `${JSON.stringify(me)}\n`
  // before the link, so that a second acquire in this process never takes our lock for a
  // leftover (a nonce that never made it into a lock stays unused)
  ownNonces.add(me.nonce)
  let broke: { holder?: StoredHolder; reason: string } | undefined
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    if (await tryCreate(path, raw)) {
      const lock: AcquiredLock = { release: releaser(path, me) }
      if (broke?.holder) lock.brokeStale = publicHolder(broke.holder)
      if (broke) lock.staleReason = broke.reason
      return lock
    }
    const seen = await observe(path)
    if (!seen) continue // released between our link and our read
    const reason = await staleReason(seen)
    if (reason === undefined) throw heldError(path, seen)
    // Break at most once: a stale lock reappearing means something else is at work here.
    if (broke) throw heldError(path, seen, ` (judged stale: ${reason}, but it came back after being broken)`)
    if (await breakStaleLock(path, seen.raw)) broke = { holder: seen.holder, reason }
  }
  throw heldError(path, await observe(path), ' (the lock kept changing hands)')
}

/** The current holder for `status`; undefined when the lock is free, unreadable or stale (its
 * holder is gone, e.g. a killed run: that lock holds nothing and the next run breaks it). */
export const readLockHolder = async (path: string): Promise<LockHolder | undefined> => {
  const seen = await observe(path)
  const h = seen?.holder
  if (!seen || !h || (await staleReason(seen)) !== undefined) return undefined
  return publicHolder(h)
}
