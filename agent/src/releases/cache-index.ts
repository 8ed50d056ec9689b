/**
 * The release cache in the bucket: where each object lives, and the two small documents that
 * make archives findable. Pure. Everything read back is untrusted (anyone allowed to write the
 * prefix could have written it): parsed against exactly the form written here, and checked
 * against what the reader asked for.
 *
 *   <prefix>/<service>/index/<commit>/<runtime>.json      index entry: the key, the archive's sha256 and sizes
 *   <prefix>/<service>/archives/<key>/<sha256>.tar.gz     the archive (immutable: named by its own content)
 *   <prefix>/<service>/branches/<runtime>/<branch>.json   branch pointer: the last commit published healthy
 *
 * The index is found by the commit and the runtime, which a boot knows before it has any source;
 * the entry holds the full key (releases/cache-key.ts), checked again once the release is
 * extracted. An archive is named by its own sha256, so instances publishing the same key at once
 * never overwrite each other's bytes: whichever index entry is last, its archive is the one it
 * names. The entry is written after the archive, in one PutObject: a reader never sees an entry
 * without its archive, nor half an entry.
 */
import { parseJsonObject } from '../core/json-object.js'
import type { ReleaseCacheLocation } from '../config/settings.js'
import { CACHE_FORMAT, runtimeId, type Runtime } from './cache-key.js'

/** Documents are a few hundred bytes; anything larger is not one of ours. */
export const DOCUMENT_MAX_BYTES = 64 * 1024
/** Bounds for the sizes an entry may record (a release of node_modules and a build is far below). */
export const ARCHIVE_MAX_BYTES = 8 * 1024 ** 3
export const UNPACKED_MAX_BYTES = 32 * 1024 ** 3
export const ENTRIES_MAX = 4_000_000

const under = (loc: ReleaseCacheLocation, ...parts: string[]) => [loc.prefix, ...parts].filter(p => p !== '').join('/')

export const indexKey = (loc: ReleaseCacheLocation, service: string, commit: string, runtime: Runtime): string =>
  under(loc, service, 'index', commit.toLowerCase(), `${runtimeId(runtime)}.json`)

export const archiveKey = (loc: ReleaseCacheLocation, service: string, key: string, sha256: string): string =>
  under(loc, service, 'archives', key, `${sha256}.tar.gz`)

export const pointerKey = (loc: ReleaseCacheLocation, service: string, branch: string, runtime: Runtime): string =>
  under(loc, service, 'branches', runtimeId(runtime), `${branch}.json`)

export interface ArchiveRecord {
  /** the object key (archiveKey of the entry's key and sha256) */
  object: string
  sha256: string
  /** compressed size */
  bytes: number
  /** sum of the entries' sizes, and how many entries: the extraction stops past either */
  unpackedBytes: number
  entries: number
}

export interface IndexEntry {
  format: typeof CACHE_FORMAT
  key: string
  service: string
  commit: string
  branch: string
  runtime: Runtime
  archive: ArchiveRecord
  publishedAt: string
  /** the instance that published it (its health gate passed there) */
  publishedBy: string
}

export interface BranchPointer {
  format: typeof CACHE_FORMAT
  service: string
  branch: string
  commit: string
  key: string
  publishedAt: string
}

const HEX64 = /^[0-9a-f]{64}$/
const COMMIT = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/

const str = (o: Record<string, unknown>, k: string): string | undefined => (typeof o[k] === 'string' ? (o[k] as string) : undefined)
const size = (o: Record<string, unknown>, k: string, max: number): number | undefined => {
  const v = o[k]
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max ? v : undefined
}
const sameRuntime = (v: unknown, r: Runtime): boolean =>
  typeof v === 'object' && v !== null && !Array.isArray(v) &&
  (['node', 'abi', 'platform', 'arch', 'libc'] as const).every(k => (v as Record<string, unknown>)[k] === r[k])

/** What was asked: the entry must be about exactly this. */
export interface EntryExpectation {
  loc: ReleaseCacheLocation
  service: string
  commit: string
  runtime: Runtime
}

/** A document of ours: a JSON object of this agent's format, or why not. */
const documentOf = (text: string, what: string): Record<string, unknown> | string => {
  const o = parseJsonObject(text)
  if (!o) return `${what} is not a JSON object`
  if (o['format'] !== CACHE_FORMAT) return `${what} has format ${JSON.stringify(o['format'])}, this agent reads ${CACHE_FORMAT}`
  return o
}

/** The entry, or why it cannot be used (a value, not an exception: a bad entry means "build from source"). */
export const parseIndexEntry = (text: string, x: EntryExpectation): IndexEntry | string => {
  const o = documentOf(text, 'the index entry')
  if (typeof o === 'string') return o
  const key = str(o, 'key')
  const commit = str(o, 'commit')
  const branch = str(o, 'branch')
  const publishedAt = str(o, 'publishedAt')
  const publishedBy = str(o, 'publishedBy')
  if (key === undefined || !HEX64.test(key)) return 'the index entry has no valid key'
  if (str(o, 'service') !== x.service || commit !== x.commit.toLowerCase()) return 'the index entry is about another service or commit'
  if (!sameRuntime(o['runtime'], x.runtime)) return 'the index entry is for another runtime'
  if (branch === undefined || publishedAt === undefined || publishedBy === undefined) return 'the index entry lacks its branch, date or publisher'
  const a = o['archive']
  if (typeof a !== 'object' || a === null || Array.isArray(a)) return 'the index entry has no archive record'
  const ar = a as Record<string, unknown>
  const sha256 = str(ar, 'sha256')
  const bytes = size(ar, 'bytes', ARCHIVE_MAX_BYTES)
  const unpackedBytes = size(ar, 'unpackedBytes', UNPACKED_MAX_BYTES)
  const entries = size(ar, 'entries', ENTRIES_MAX)
  if (sha256 === undefined || !HEX64.test(sha256)) return 'the archive record has no valid sha256'
  if (bytes === undefined || unpackedBytes === undefined || entries === undefined) return 'the archive record has sizes out of bounds'
  // the archive is where this agent would have put it, never an object the entry chose
  const object = archiveKey(x.loc, x.service, key, sha256)
  if (ar['object'] !== object) return 'the archive record names an unexpected object'
  return { format: CACHE_FORMAT, key, service: x.service, commit, branch, runtime: x.runtime, archive: { object, sha256, bytes, unpackedBytes, entries }, publishedAt, publishedBy }
}

export const parseBranchPointer = (text: string, x: { service: string; branch: string }): BranchPointer | string => {
  const o = documentOf(text, 'the branch pointer')
  if (typeof o === 'string') return o
  const commit = str(o, 'commit')
  const key = str(o, 'key')
  const publishedAt = str(o, 'publishedAt')
  if (str(o, 'service') !== x.service || str(o, 'branch') !== x.branch) return 'the branch pointer is about another service or branch'
  if (commit === undefined || !COMMIT.test(commit)) return 'the branch pointer has no valid commit'
  if (key === undefined || !HEX64.test(key) || publishedAt === undefined) return 'the branch pointer lacks its key or date'
  return { format: CACHE_FORMAT, service: x.service, branch: x.branch, commit, key, publishedAt }
}

export const formatDocument = (d: IndexEntry | BranchPointer): string => `${JSON.stringify(d, null, 2)}\n`
