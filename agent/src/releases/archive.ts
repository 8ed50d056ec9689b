/**
 * The release archive: a tar of the release directory as deployed, packed and unpacked with
 * node-tar (npm's own, hardened against hostile archives for years: `..` and absolute paths,
 * links leaving the target, extraction through symlinks, device files, decompression bombs).
 * Both halves run in releases/archive-worker.ts as the service user, never as root: what they
 * read or write is the service user's already (invariant 5).
 *
 * Packing leaves out `.git` (the clone's history, credentials never: git/auth.ts keeps them out
 * of it), the agent's own record of the release, anything that is not a file, directory or
 * symlink (a socket or FIFO is runtime state, and opening a FIFO would block), and files changed
 * after the release was complete: what the service wrote while running (its caches, a file of
 * its environment) is not the release as deployed.
 *
 * Unpacking runs node-tar in strict mode (every warning it raises refuses the archive) plus our
 * own filter for what it lets through: setuid/setgid bits (node-tar keeps modes), entry types
 * other than files, directories and links, link targets leaving the release (checked again
 * here, before node-tar's own check), and more entries or bytes than the index entry recorded.
 */
import { Stats } from 'node:fs'
import { readdir } from 'node:fs/promises'
import { posix } from 'node:path'
import type { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createGzip } from 'node:zlib'
import { create, extract, type ReadEntry } from 'tar'
import { secretScan, type ScanStats } from './secret-scan.js'

/** gzip level of the archive: measured in bench/README.md ("The archive format") */
export const GZIP_LEVEL = 6

/** Top-level names of a release that never go into an archive: the clone's history, and the
 * record earlier agents kept inside the release (never read again: releases/records.ts). */
export const NOT_ARCHIVED = new Set(['.git', '.bootstrap-release.json'])

export interface PackOptions {
  /** the release directory */
  dir: string
  /** when the release was complete: files changed after it are runtime state, left out */
  completedAtMs: number
  /** relative paths left out because they changed after completion or are no file, directory or link */
  excluded: string[]
}

/** An uncompressed tar of the release (paths relative to it), as a stream; portable: no owner
 * names or ids of this machine in the headers. */
export const packRelease = async (o: PackOptions): Promise<Readable> => {
  const top = (await readdir(o.dir)).filter(n => !NOT_ARCHIVED.has(n)).sort()
  return create({
    cwd: o.dir,
    portable: true,
    filter: (path, stat) => {
      // packing hands the filter an fs.Stats (lstat: symlinks are stored, never followed)
      if (!(stat instanceof Stats)) return false
      if (stat.isDirectory()) return true
      if ((!stat.isFile() && !stat.isSymbolicLink()) || stat.mtimeMs > o.completedAtMs) {
        o.excluded.push(path)
        return false
      }
      return true
    },
  }, top) as unknown as Readable
}

/** The archive, gzip-compressed, written to `out` (left open): the release as packRelease packs
 * it, through the secret scan (a secret value in it refuses the whole archive). */
export const packArchive = async (o: PackOptions & { secrets: Readonly<Record<string, string>> }, out: Writable): Promise<ScanStats> => {
  const scan = secretScan(o.secrets)
  await pipeline(await packRelease(o), scan, createGzip({ level: GZIP_LEVEL }), out, { end: false })
  return scan.stats
}

/** An archive this agent will not extract: hostile, or not what its index entry said. */
export class ArchiveRefused extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ArchiveRefused'
  }
}

export interface UnpackLimits {
  /** the entry's recorded sizes: an archive that unpacks to more is not the one published */
  maxBytes: number
  maxEntries: number
}

const EXTRACTED_TYPES = new Set(['File', 'OldFile', 'ContiguousFile', 'Directory', 'SymbolicLink', 'Link'])

/** Whether a relative path, once normalized, leaves the release. */
const leaves = (p: string): boolean => {
  const n = posix.normalize(p)
  return posix.isAbsolute(p) || n === '..' || n.startsWith('../')
}

/** Why an entry is refused, or undefined when it may be extracted. */
export const refusal = (path: string, entry: Pick<ReadEntry, 'type' | 'mode' | 'linkpath'>): string | undefined => {
  const name = JSON.stringify(path.slice(0, 200))
  if (!EXTRACTED_TYPES.has(entry.type)) return `${name} is a ${entry.type}: only files, directories and links are extracted`
  if (((entry.mode ?? 0) & 0o6000) !== 0) return `${name} has the setuid or setgid bit`
  if (leaves(path) || path.split('/').includes('..')) return `${name} is outside the release`
  if (entry.type === 'SymbolicLink' || entry.type === 'Link') {
    const link = entry.linkpath ?? ''
    // a symlink's target is relative to its own directory; a hard link's to the archive's root
    const target = entry.type === 'SymbolicLink' ? posix.join(posix.dirname(path), link) : link
    if (link === '' || posix.isAbsolute(link) || leaves(target)) return `${name} links to ${JSON.stringify(link.slice(0, 200))}, outside the release`
  }
  return undefined
}

/**
 * Extracts a (gzip-compressed) tar into `dir`, which must exist and be empty; throws
 * ArchiveRefused at the first entry that is refused, with nothing written after it, leaving the
 * caller to remove `dir`.
 */
export const unpackRelease = async (input: Readable, dir: string, limits: UnpackLimits): Promise<{ entries: number; bytes: number }> => {
  let entries = 0
  let bytes = 0
  let refused: ArchiveRefused | undefined
  const unpack = extract({
    cwd: dir,
    // each chunk is parsed and written before the next is read: once an entry is refused nothing
    // is left in flight (asynchronous extraction goes on writing the entries already queued)
    sync: true,
    strict: true,
    preserveOwner: false,
    onwarn: (code, message) => {
      refused ??= new ArchiveRefused(`${code}: ${String(message)}`)
    },
    filter: (path, entry) => {
      if (refused) return false
      const e = entry as ReadEntry
      entries += 1
      bytes += e.size ?? 0
      const why = refusal(path, e) ??
        (entries > limits.maxEntries ? `more than the ${limits.maxEntries} entries its index entry recorded` : undefined) ??
        (bytes > limits.maxBytes ? `more than the ${limits.maxBytes} bytes its index entry recorded` : undefined)
      if (why === undefined) return true
      refused = new ArchiveRefused(why)
      unpack.abort(refused)
      return false
    },
  })
  try {
    await pipeline(input, unpack as unknown as Writable)
  } catch (e) {
    throw refused ?? (e instanceof Error && /^TAR_/.test(String((e as { code?: unknown }).code)) ? new ArchiveRefused(`${String((e as { code?: unknown }).code)}: ${e.message}`) : e)
  }
  if (refused) throw refused
  return { entries, bytes }
}
