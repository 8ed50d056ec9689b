/**
 * Files the service user can write, read by root (design.md invariant 5): the service's logs, a
 * release's manifest, package.json and lockfile, PM2's files, the env file. What root reads there
 * could otherwise be anything the service user asked for: a link to /etc/shadow quoted back in an
 * error, a FIFO that blocks root's open forever, /dev/zero that never ends.
 *
 * So every such read opens the file below its directory without following a link (beneath.ts),
 * with O_NONBLOCK (a FIFO opens at once instead of waiting for a writer) and O_NOCTTY, and checks
 * the open file itself (fstat: no race) before reading a byte: a regular file, owned by the
 * service user, with one link (a hard link is another name for someone else's file), at most
 * `maxBytes` long. What passes is text the service user could have read or written itself, so
 * nothing root alone may see can reach an error, a log line or state.json through it.
 */
import { constants, type Stats } from 'node:fs'
import type { FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { kindOf, openBeneath, RefusedPathError } from './beneath.js'
import { errnoCode } from './errors.js'

const READ_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY

export interface UntrustedFile {
  /** a directory whose own path root trusts (its parent is root's) */
  dir: string
  /** the file below it; every component is walked without links */
  rel: string
  /** the uid whose files these are: the service user (the agent's own uid when it is not root) */
  owner: number
}

/** Why the open file must not be read, or undefined when it may. */
export const refusal = (st: Stats, owner: number, maxBytes: number): string | undefined => {
  if (!st.isFile()) return `it is ${kindOf(st)}`
  if (st.uid !== owner) return `it belongs to uid ${st.uid}, not to the service user (uid ${owner})`
  if (st.nlink !== 1) return `it has ${st.nlink} hard links (another name for a file elsewhere)`
  if (st.size > maxBytes) return `it is ${st.size} bytes, more than the ${maxBytes} expected`
  return undefined
}

/** The file open and checked, or undefined when it does not exist. */
const openChecked = async (f: UntrustedFile, maxBytes: number): Promise<{ fh: FileHandle; size: number } | undefined> => {
  let fh: FileHandle
  try {
    fh = await openBeneath(f.dir, f.rel, READ_FLAGS)
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return undefined
    throw e
  }
  try {
    const st = await fh.stat()
    const why = refusal(st, f.owner, maxBytes)
    if (why) throw new RefusedPathError(join(f.dir, f.rel), why)
    return { fh, size: st.size }
  } catch (e) {
    await fh.close()
    throw e
  }
}

/** Reads `len` bytes at `position` (a file may shrink meanwhile: what is there). */
const readAt = async (fh: FileHandle, len: number, position: number): Promise<Buffer> => {
  const buf = Buffer.alloc(len)
  let got = 0
  while (got < len) {
    const { bytesRead } = await fh.read(buf, got, len - got, position + got)
    if (bytesRead === 0) break
    got += bytesRead
  }
  return buf.subarray(0, got)
}

/**
 * The whole file as UTF-8, or undefined when it does not exist. Throws RefusedPathError (exit 2)
 * for a link, anything but a regular file of `owner`, a hard link, or a file over `maxBytes`.
 */
export const readUntrusted = async (f: UntrustedFile, maxBytes: number): Promise<string | undefined> => {
  const opened = await openChecked(f, maxBytes)
  if (!opened) return undefined
  try {
    // bounded by the size fstat saw, plus one byte to notice a file that grew past the bound
    const buf = await readAt(opened.fh, Math.min(opened.size, maxBytes) + 1, 0)
    if (buf.length > maxBytes) throw new RefusedPathError(join(f.dir, f.rel), `it grew past the ${maxBytes} bytes expected while it was read`)
    return buf.toString('utf8')
  } finally {
    await opened.fh.close()
  }
}

export type Tail = { kind: 'lines'; lines: string[] } | { kind: 'missing' } | { kind: 'refused'; why: string }

/**
 * The last `lines` non-empty lines of a log the service writes, from at most its last `maxBytes`.
 * Never throws for what the file is: a refused file says why (its type, owner or links: facts
 * root saw, none of its content), so a health failure can still report it.
 */
export const tailUntrusted = async (f: UntrustedFile, lines: number, maxBytes = 16 * 1024): Promise<Tail> => {
  let opened
  try {
    // logs may be any size: only the tail is read
    opened = await openChecked(f, Number.MAX_SAFE_INTEGER)
  } catch (e) {
    if (e instanceof RefusedPathError) return { kind: 'refused', why: e.why }
    throw e
  }
  if (!opened) return { kind: 'missing' }
  try {
    const len = Math.min(opened.size, maxBytes)
    const buf = await readAt(opened.fh, len, opened.size - len)
    return { kind: 'lines', lines: buf.toString('utf8').split('\n').filter(l => l.trim() !== '').slice(-lines) }
  } finally {
    await opened.fh.close()
  }
}

/**
 * fsync of a file the service writes (its logs before a shutdown): opened without links and
 * without blocking, synced only when it is a regular file. Returns whether it was.
 */
export const syncUntrusted = async (f: Omit<UntrustedFile, 'owner'>): Promise<boolean> => {
  let fh: FileHandle
  try {
    fh = await openBeneath(f.dir, f.rel, READ_FLAGS)
  } catch (e) {
    if (e instanceof RefusedPathError || errnoCode(e) === 'ENOENT') return false
    throw e
  }
  try {
    if (!(await fh.stat()).isFile()) return false
    await fh.sync()
    return true
  } finally {
    await fh.close()
  }
}
