/**
 * The agent's record of each release: the commit and branch it cloned, what `npm ci` installed
 * from (the install key), and whether it passed its health gate (good: a rollback target, a
 * source of node_modules, kept by cleanup). One JSON file per release under the state directory
 * (`/var/lib/bootstrap-agent/releases/<service>/<id>.json`), which only root writes.
 *
 * Not inside the release: a release directory belongs to the service user, and repo code (an
 * install script, a build, the service itself) could rewrite a record kept there, marking a
 * failed release good, or naming the remote's newest commit so the next run believes it is
 * already deployed, or another install key so a new release reuses node_modules it prepared.
 * Written last (after the build), atomically: a record means the release is complete.
 *
 * Agents before this one kept the record in the release (`.bootstrap-release.json`). That file is
 * never read again; see adoptLegacyRelease for the one release carried over.
 */
import { mkdir, readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileAtomic } from '../core/atomic-write.js'
import { AgentError, errnoCode } from '../core/errors.js'
import { parseJsonObject } from '../core/json-object.js'
import type { RunState } from '../run/state.js'
import { parseReleaseId } from './release-id.js'

export interface ReleaseRecord {
  id: string
  commit: string
  branch: string
  createdAt: string
  /** what `npm ci` depended on (lockfile + Node ABI); equal keys let a run reuse node_modules */
  installKey?: string
  /** set once the release passed its health check; only good releases are rollback targets */
  good?: boolean
  /** how a release of an earlier agent version came to have a record (adoptLegacyRelease) */
  adoptedFrom?: string
  /** where it came from: built from source here, or extracted from the release cache */
  origin?: ReleaseOrigin
  /** once it is in the release cache (published by this instance, or found there) */
  published?: { at: string; index: string }
}

export type ReleaseOrigin = 'source' | 'cache'

const fileOf = (dir: string, id: string): string => {
  if (!parseReleaseId(id)) {
    throw new AgentError(`not a release id: "${id}"`, { code: 'RELEASE_ID_INVALID', remedy: 'use an id of the form 20261124T021500Z-0123456789ab (see `bootstrap-agent status`)' })
  }
  return join(dir, `${id}.json`)
}

/** `published` as recorded; false when it is there but not of that form */
const publishedOf = (v: unknown): { at: string; index: string } | undefined | false => {
  if (v === undefined) return undefined
  if (typeof v !== 'object' || v === null) return false
  const { at, index } = v as Record<string, unknown>
  return typeof at === 'string' && typeof index === 'string' ? { at, index } : false
}

const parseRecord = (raw: string, id: string): ReleaseRecord | undefined => {
  const o = parseJsonObject(raw)
  if (!o) return undefined
  const { commit, branch, createdAt, installKey, good, adoptedFrom, origin, published } = o
  if (o['id'] !== id || typeof commit !== 'string' || typeof branch !== 'string' || typeof createdAt !== 'string') return undefined
  if (installKey !== undefined && typeof installKey !== 'string') return undefined
  if (good !== undefined && typeof good !== 'boolean') return undefined
  if (adoptedFrom !== undefined && typeof adoptedFrom !== 'string') return undefined
  if (origin !== undefined && origin !== 'source' && origin !== 'cache') return undefined
  const pub = publishedOf(published)
  if (pub === false) return undefined
  return {
    id, commit, branch, createdAt,
    ...(installKey === undefined ? {} : { installKey }),
    ...(good === undefined ? {} : { good }),
    ...(adoptedFrom === undefined ? {} : { adoptedFrom }),
    ...(origin === undefined ? {} : { origin }),
    ...(pub === undefined ? {} : { published: pub }),
  }
}

/** The record of release `id`; undefined when there is none (an incomplete release) or it does
 * not parse (a crash cannot leave half a record: it is written atomically). */
export const readReleaseRecord = async (dir: string, id: string): Promise<ReleaseRecord | undefined> => {
  try {
    return parseRecord(await readFile(fileOf(dir, id), 'utf8'), id)
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return undefined
    throw e
  }
}

/** Written once everything before it finished (fsynced temp + rename): the release is complete. */
export const recordRelease = async (dir: string, record: ReleaseRecord): Promise<void> => {
  const file = fileOf(dir, record.id)
  await mkdir(dir, { recursive: true, mode: 0o755 })
  await writeFileAtomic(file, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o644 })
}

/** The record of a complete release, rewritten with `patch`. */
const updateRecord = async (dir: string, id: string, patch: Partial<Omit<ReleaseRecord, 'id'>>): Promise<ReleaseRecord> => {
  const record = await readReleaseRecord(dir, id)
  if (!record) {
    throw new AgentError(`release ${id} has no record in ${dir}: it is incomplete`, {
      code: 'RELEASE_INCOMPLETE',
      remedy: 'run `bootstrap-agent run` again to build a fresh release',
    })
  }
  const updated = { ...record, ...patch }
  await recordRelease(dir, updated)
  return updated
}

export const markReleaseGood = (dir: string, id: string): Promise<ReleaseRecord> => updateRecord(dir, id, { good: true })

/** The release is in the release cache: later runs do not publish it again. */
export const markReleasePublished = (dir: string, id: string, published: { at: string; index: string }): Promise<ReleaseRecord> =>
  updateRecord(dir, id, { published })

export const removeReleaseRecord = (dir: string, id: string): Promise<void> => rm(fileOf(dir, id), { force: true })

/** Temp files of a record write killed midway (writeFileAtomic's `.<name>.tmp-*`); under the run
 * lock none is in progress. Returns how many were removed. */
export const removeStaleRecordTemps = async (dir: string): Promise<number> => {
  const names = await readdir(dir).catch((e: unknown) => {
    if (errnoCode(e) === 'ENOENT') return [] as string[]
    throw e
  })
  const stale = names.filter(n => /^\..+\.json\.tmp-[0-9a-f]+$/.test(n))
  for (const n of stale) await rm(join(dir, n), { force: true })
  return stale.length
}

/** Ids that have a record, whether or not their release is still on disk. */
export const listReleaseRecords = async (dir: string): Promise<string[]> => {
  const names = await readdir(dir).catch((e: unknown) => {
    if (errnoCode(e) === 'ENOENT') return [] as string[]
    throw e
  })
  return names.filter(n => n.endsWith('.json') && parseReleaseId(n.slice(0, -5))).map(n => n.slice(0, -5)).sort()
}

/**
 * A live release deployed by an agent that kept its record inside the release has no record
 * here. Its old record is the service user's to rewrite, so it is not believed; the one fact
 * root holds about it is the previous run's state.json (root's own file): when that run ended
 * in `success` (or `prepared`, a warm pool) with exactly this release live, root watched it pass
 * its health gate (or prepared it), and its commit and branch are recorded there. That release is
 * adopted (good for `success`); any other release of an earlier agent stays without a record:
 * never a rollback target nor a source of node_modules, and cleanup removes it. Its install key
 * is not known, so the next new release runs npm ci.
 */
export const adoptLegacyRelease = async (dir: string, live: string, previous: RunState | undefined, service: string): Promise<ReleaseRecord | undefined> => {
  if (!previous || previous.service !== service || previous.release !== live || !previous.commit || !previous.branch) return undefined
  if (previous.outcome !== 'success' && previous.outcome !== 'prepared') return undefined
  const parsed = parseReleaseId(live)
  if (!parsed || !previous.commit.toLowerCase().startsWith(parsed.shortSha)) return undefined
  const record: ReleaseRecord = {
    id: live,
    commit: previous.commit,
    branch: previous.branch,
    createdAt: parsed.createdAt.toISOString(),
    ...(previous.outcome === 'success' ? { good: true } : {}),
    adoptedFrom: `state.json of run ${previous.runId} (${previous.outcome})`,
  }
  await recordRelease(dir, record)
  return record
}
