/**
 * Publishing a release to the cache, after its health gate passed and after the lifecycle hook
 * was completed (run/phases/publish.ts), so it never delays InService. The archive is written to
 * a file in the agent's own directory first, then uploaded, then the index entry that makes it
 * visible, then the branch pointer: a reader never sees an entry without its archive.
 *
 *   service user (archive-worker pack): tar of the release -> secret scan -> gzip -> the file,
 *                                       by descriptor (0600, in the agent's directory)
 *   agent:  sha256 and size of the file -> S3: archive (multipart, S3's SHA-256 checksum)
 *           -> index entry -> branch pointer
 *
 * Streamed end to end: memory stays flat whatever the size of the release.
 */
import { randomBytes } from 'node:crypto'
import { rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { ReleaseCacheLocation } from '../config/settings.js'
import type { ServiceSpec } from '../config/manifest.js'
import { packAsServiceUser, type WorkerOptions } from './archive-process.js'
import { readReleaseCacheKey, type Runtime } from './cache-key.js'
import { archiveKey, formatDocument, indexKey, pointerKey, type IndexEntry } from './cache-index.js'
import { readIndexEntry } from './cache-restore.js'
import { sha256File } from '../core/file-hash.js'
import type { CacheStore } from './cache-store.js'

export interface PublishInput {
  store: CacheStore
  loc: ReleaseCacheLocation
  worker: WorkerOptions
  service: string
  branch: string
  commit: string
  spec: ServiceSpec
  runtime: Runtime
  /** the release directory, and when it was complete (files changed later are left out) */
  dir: string
  /** the service user's uid: the release's files are read as its (releases/install.ts) */
  owner: number
  completedAt: Date
  /** the service's env file: none of its values may be in the archive */
  envFile: string
  /** the agent's own directory for the archive on its way */
  workDir: string
  publishedBy: string
  /** replace the index entry even if there is one (it was found unusable by this run) */
  replace: boolean
  now: () => Date
}

export type PublishOutcome =
  | { result: 'published'; entry: IndexEntry; indexObject: string; excluded: number; examples: string[] }
  /** another instance published this key first (now, or before this run looked) */
  | { result: 'already'; indexObject: string; publishedBy: string }

export const publishRelease = async (i: PublishInput): Promise<PublishOutcome> => {
  const key = await readReleaseCacheKey({ dir: i.dir, owner: i.owner }, i.spec, i.commit, i.runtime)
  const indexObject = indexKey(i.loc, i.service, i.commit, i.runtime)
  const expect = { loc: i.loc, service: i.service, commit: i.commit, runtime: i.runtime }
  if (!i.replace) {
    // the common case of a fleet: most instances find the release published already
    const existing = await readIndexEntry(i.store, expect)
    if (typeof existing === 'object' && existing.key === key) return { result: 'already', indexObject, publishedBy: existing.publishedBy }
  }
  const file = join(i.workDir, `publish-${randomBytes(6).toString('hex')}.tar.gz`)
  try {
    const packed = await packAsServiceUser(i.worker, i.dir, i.completedAt.getTime(), i.envFile, file)
    const sha256 = await sha256File(file)
    const bytes = (await stat(file)).size
    const object = archiveKey(i.loc, i.service, key, sha256)
    await i.store.upload(object, file, 'application/gzip')
    const entry: IndexEntry = {
      format: 1, key, service: i.service, commit: i.commit.toLowerCase(), branch: i.branch, runtime: i.runtime,
      archive: { object, sha256, bytes, unpackedBytes: packed.bytes, entries: packed.entries },
      publishedAt: i.now().toISOString(), publishedBy: i.publishedBy,
    }
    // first writer wins (S3's conditional write): the others' archives stay unreferenced until the
    // lifecycle rule expires them
    const written = await i.store.putText(indexObject, formatDocument(entry), { ifAbsent: !i.replace })
    if (written === 'exists') {
      const other = await readIndexEntry(i.store, expect)
      return { result: 'already', indexObject, publishedBy: typeof other === 'object' ? other.publishedBy : 'another instance' }
    }
    // the pointer names the last commit published healthy on this branch: the commit a boot may
    // deploy when the git remote cannot be reached
    await i.store.putText(pointerKey(i.loc, i.service, i.branch, i.runtime), formatDocument({
      format: 1, service: i.service, branch: i.branch, commit: entry.commit, key, publishedAt: entry.publishedAt,
    }), { ifAbsent: false })
    return { result: 'published', entry, indexObject, excluded: packed.excluded, examples: packed.examples }
  } finally {
    await rm(file, { force: true })
  }
}
