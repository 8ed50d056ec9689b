/**
 * A release from the cache instead of clone + npm ci + build: the index entry for the commit and
 * this runtime, the archive it names downloaded into the agent's own directory, its sha256
 * checked against the entry *before* anything is extracted, then extracted by the service user
 * (releases/archive-worker.ts) and renamed into place whole. The extracted release is checked
 * once more: its manifest must load and its own cache key (computed from its files, as a build
 * from source would) must be the entry's.
 *
 * Never throws: every problem is an outcome the caller logs as a warning before it deploys from
 * source. `entryBad` says the entry itself cannot be used (so the publisher of this run replaces
 * it), as opposed to S3 being unreachable, slow or refusing.
 */
import { randomBytes } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { ReleaseCacheLocation } from '../config/settings.js'
import { loadServiceSpec, type ServiceSpec } from '../config/manifest.js'
import { isAgentError, messageOf } from '../core/errors.js'
import { sha256File } from '../core/file-hash.js'
import { unpackAsServiceUser, type WorkerOptions } from './archive-process.js'
import { releaseCacheKey, type Runtime } from './cache-key.js'
import { DOCUMENT_MAX_BYTES, indexKey, parseIndexEntry, type EntryExpectation, type IndexEntry } from './cache-index.js'
import type { CacheStore } from './cache-store.js'
import { installKey, readInstallInputs } from './install.js'
import { removeRelease, type ReleasePaths } from './releases.js'

export interface RestoreInput {
  store: CacheStore
  loc: ReleaseCacheLocation
  worker: WorkerOptions
  service: string
  manifestFile: string
  commit: string
  runtime: Runtime
  /** where the release is created (<serviceDir>/releases/<id>) and its record kept */
  paths: ReleasePaths
  id: string
  /** the service user: the extracted files are its (uid), removing them is its job (removeTree) */
  owner: number
  removeTree: (dir: string) => Promise<void>
  /** the agent's own directory (root only) for the download */
  workDir: string
}

export type RestoreOutcome =
  | { result: 'hit'; object: string; entry: IndexEntry; spec: ServiceSpec; dir: string; installKey: string | undefined; ms: { download: number; verify: number; extract: number } }
  | { result: 'miss'; object: string }
  | { result: 'unusable'; object: string; reason: string; entryBad: boolean }

/** The index entry of a commit on this runtime: undefined when there is none, a string saying why
 * when there is one that cannot be used. Throws what the store throws. */
export const readIndexEntry = async (store: CacheStore, x: EntryExpectation): Promise<IndexEntry | string | undefined> => {
  const text = await store.getText(indexKey(x.loc, x.service, x.commit, x.runtime), DOCUMENT_MAX_BYTES)
  return text === undefined ? undefined : parseIndexEntry(text, x)
}

/** Which failures mean the entry (or its archive) is bad, rather than S3 being out of reach. */
const ENTRY_BAD = new Set(['CACHE_ARCHIVE_SIZE', 'AWS_NOT_FOUND', 'CACHE_ARCHIVE_REFUSED', 'CACHE_DOCUMENT_INVALID'])

export const restoreRelease = async (i: RestoreInput): Promise<RestoreOutcome> => {
  const object = indexKey(i.loc, i.service, i.commit, i.runtime)
  const unusable = (reason: string, entryBad: boolean, what = object): RestoreOutcome => ({ result: 'unusable', object: i.store.url(what), reason, entryBad })
  let entry: IndexEntry | string | undefined
  try {
    entry = await readIndexEntry(i.store, { loc: i.loc, service: i.service, commit: i.commit, runtime: i.runtime })
  } catch (e) {
    return unusable(messageOf(e), isAgentError(e) && ENTRY_BAD.has(e.code) && e.code !== 'AWS_NOT_FOUND')
  }
  if (entry === undefined) return { result: 'miss', object: i.store.url(object) }
  if (typeof entry === 'string') return unusable(entry, true)

  const archive = entry.archive.object
  const file = join(i.workDir, `restore-${randomBytes(6).toString('hex')}.tar.gz`)
  const dir = join(i.paths.serviceDir, 'releases', i.id)
  const t0 = performance.now()
  try {
    try {
      await i.store.download(archive, file, entry.archive.bytes)
    } catch (e) {
      return unusable(messageOf(e), isAgentError(e) && ENTRY_BAD.has(e.code), archive)
    }
    const t1 = performance.now()
    const sha256 = await sha256File(file)
    if (sha256 !== entry.archive.sha256) return unusable(`checksum mismatch: the archive's sha256 is ${sha256}, its index entry says ${entry.archive.sha256}; not extracted`, true, archive)
    const t2 = performance.now()
    try {
      await unpackAsServiceUser(i.worker, file, join(i.paths.serviceDir, 'releases'), i.id, { maxBytes: entry.archive.unpackedBytes, maxEntries: entry.archive.entries })
    } catch (e) {
      return unusable(messageOf(e), isAgentError(e) && ENTRY_BAD.has(e.code), archive)
    }
    const t3 = performance.now()
    try {
      // read as the service user's files, before any code of the release runs (releases/install.ts)
      const repo = { dir, owner: i.owner }
      const spec = await loadServiceSpec(repo, i.manifestFile, i.service)
      const install = await readInstallInputs(repo, spec.path)
      const key = releaseCacheKey({ commit: i.commit, spec, install, runtime: i.runtime })
      if (key !== entry.key) throw new Error(`the extracted release's cache key is ${key}, its index entry says ${entry.key}`)
      return {
        result: 'hit', object: i.store.url(object), entry, spec, dir, installKey: install && installKey(install),
        ms: { download: Math.round(t1 - t0), verify: Math.round(t2 - t1), extract: Math.round(t3 - t2) },
      }
    } catch (e) {
      await removeRelease(i.paths, i.id, i.removeTree).catch(() => undefined)
      return unusable(messageOf(e), true, archive)
    }
  } finally {
    await rm(file, { force: true })
  }
}
