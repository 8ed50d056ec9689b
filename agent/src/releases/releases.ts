/**
 * Release directories under `<serviceDir>/releases/<id>` and the `current` symlink that picks the
 * live one. Invariant: `current` only ever points at a complete release (one with a record,
 * written last: releases/records.ts), and it is switched by renaming a new symlink over it, so a
 * crash leaves either the old target or the new one.
 *
 * `<serviceDir>` and `current` are root's; `releases/` and everything in it is the service
 * user's (git clones, npm ci and the service run as that user). So nothing here follows a link
 * below `releases/`, and a release is removed by the service user (`removeTree`), never by a
 * recursive delete as root that a link swapped in midway could send elsewhere.
 */
import { randomBytes } from 'node:crypto'
import { lstat, open, readdir, readlink, rename, rm, symlink, unlink } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import { AgentError, errnoCode } from '../core/errors.js'
import type { Paths } from '../core/paths.js'
import { readReleaseRecord, removeReleaseRecord } from './records.js'
import { parseReleaseId } from './release-id.js'

export { releaseId, newReleaseId, parseReleaseId } from './release-id.js'

/** A service's directory (`current`, `releases/`) and the agent's records of its releases. */
export type ReleasePaths = Pick<Paths, 'serviceDir' | 'releaseRecords'>

const CURRENT = 'current'
const CURRENT_TMP_PREFIX = '.current.tmp-'

const randomHex = () => randomBytes(6).toString('hex')

/**
 * Which releases to delete: keep the newest `keep` good ones, never `live` or `lastGood`; every
 * other release (failed or never finished) goes. Oldest first. Ids sort by time as strings.
 */
export const pickReleasesToPrune = (input: {
  releases: string[]
  live?: string
  lastGood?: string
  good: string[]
  keep: number
}): string[] => {
  const good = new Set(input.good)
  const newestFirst = [...new Set(input.releases)].sort().reverse()
  const kept = new Set(newestFirst.filter((r) => good.has(r)).slice(0, Math.max(0, input.keep)))
  for (const r of [input.live, input.lastGood]) if (r !== undefined) kept.add(r)
  return newestFirst.filter((r) => !kept.has(r)).reverse()
}

const releasePath = (serviceDir: string, id: string): string => {
  if (!parseReleaseId(id)) {
    throw new AgentError(`not a release id: "${id}"`, {
      code: 'RELEASE_ID_INVALID',
      remedy: 'use an id of the form 20261124T021500Z-0123456789ab (see `bootstrap-agent status`)',
    })
  }
  return join(serviceDir, 'releases', id)
}

const incomplete = (dir: string) =>
  new AgentError(`release ${dir} is incomplete (the agent has no record of it)`, {
    code: 'RELEASE_INCOMPLETE',
    remedy: 'run `bootstrap-agent run` again to build a fresh release',
  })

/** The release `current` points to; undefined when it is missing, dangling or not a release. */
export const readCurrent = async (serviceDir: string): Promise<string | undefined> => {
  let target: string
  try {
    target = await readlink(join(serviceDir, CURRENT))
  } catch {
    return undefined // ENOENT, or EINVAL: not a symlink
  }
  const abs = resolve(serviceDir, target)
  const id = basename(abs)
  if (dirname(abs) !== resolve(serviceDir, 'releases') || !parseReleaseId(id)) return undefined
  // lstat: a release replaced by a link (releases/ is the service user's) is not a release
  const st = await lstat(abs).catch(() => undefined)
  return st?.isDirectory() ? id : undefined
}

/** Release ids on disk, oldest first; other names (temps, hand-made dirs) are ignored. */
export const listReleases = async (serviceDir: string): Promise<string[]> => {
  const entries = await readdir(join(serviceDir, 'releases'), { withFileTypes: true }).catch((e: unknown) => {
    if (errnoCode(e) === 'ENOENT') return []
    throw e
  })
  return entries.filter((e) => e.isDirectory() && parseReleaseId(e.name)).map((e) => e.name).sort()
}

export const switchCurrent = async (
  p: ReleasePaths,
  releaseId: string,
): Promise<{ previous?: string }> => {
  const { serviceDir } = p
  const dir = releasePath(serviceDir, releaseId)
  if (!(await readReleaseRecord(p.releaseRecords, releaseId))) throw incomplete(dir)
  const currentPath = join(serviceDir, CURRENT)
  const st = await lstat(currentPath).catch((e: unknown) => {
    if (errnoCode(e) === 'ENOENT') return undefined
    throw e
  })
  if (st && !st.isSymbolicLink()) {
    throw new AgentError(`${currentPath} exists and is not a symlink; left it as it is`, {
      code: 'CURRENT_NOT_SYMLINK',
      remedy: `move ${currentPath} out of the way (it is managed by the agent), then run again`,
    })
  }
  const previous = await readCurrent(serviceDir)
  const tmp = join(serviceDir, `${CURRENT_TMP_PREFIX}${randomHex()}`)
  // Relative target: the tree stays valid when the sandbox root or a backup is moved elsewhere.
  await symlink(join('releases', releaseId), tmp)
  try {
    await rename(tmp, currentPath)
  } catch (e) {
    await unlink(tmp).catch(() => undefined)
    throw e
  }
  // Persist the rename before anything (pruning) deletes the old target: after a power loss the
  // directory must not come back with `current` pointing at a release that is gone.
  const dh = await open(serviceDir, 'r')
  await dh.sync().finally(() => dh.close())
  return previous === undefined ? {} : { previous }
}

/** Removes one release (its record, then its directory, with `removeTree`: core/remove-tree.ts,
 * as the service user); refuses the live one. */
export const removeRelease = async (p: ReleasePaths, id: string, removeTree: (dir: string) => Promise<void>): Promise<void> => {
  const dir = releasePath(p.serviceDir, id)
  if ((await readCurrent(p.serviceDir)) === id) {
    throw new AgentError(`refusing to remove release ${id}: \`current\` points to it`, {
      code: 'RELEASE_IN_USE',
      remedy: 'switch to another release first',
    })
  }
  // Record first: if the removal is killed halfway, what is left reads as incomplete and is
  // never switched to (cleanup removes it later).
  await removeReleaseRecord(p.releaseRecords, id)
  await removeTree(dir)
}

/** Leftover `.current.tmp-*` symlinks of a killed switch. Call under the run lock only: a
 * concurrent switch's temp would be removed from under it. Returns the names removed. */
export const removeStaleTemps = async (serviceDir: string): Promise<string[]> => {
  const names = await readdir(serviceDir).catch((e: unknown) => {
    if (errnoCode(e) === 'ENOENT') return []
    throw e
  })
  const stale = names.filter((n) => n.startsWith(CURRENT_TMP_PREFIX))
  await Promise.all(stale.map((n) => rm(join(serviceDir, n), { force: true })))
  return stale
}

