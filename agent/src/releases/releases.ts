/**
 * Release directories under `<serviceDir>/releases/<id>` and the `current` symlink that picks the
 * live one. Invariant: `current` only ever points at a complete release (one with the marker file
 * written last by `markReleaseComplete`), and it is switched by renaming a new symlink over it, so a
 * crash leaves either the old target or the new one.
 */
import { randomBytes } from 'node:crypto'
import {
  lstat, open, readdir, readFile, readlink, rename, rm, stat, symlink, unlink,
} from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import { writeFileAtomic } from '../core/atomic-write.js'
import { AgentError, errnoCode } from '../core/errors.js'
import { parseJsonObject } from '../core/json-object.js'

export interface ReleaseMeta {
  id: string
  commit: string
  branch: string
  createdAt: string
  /** what `npm ci` depended on (lockfile + Node ABI); equal keys let a run reuse node_modules */
  installKey?: string
  /** set once the release passed its health check; only good releases are rollback targets */
  good?: boolean
}

export const RELEASE_MARKER = '.bootstrap-release.json'
const CURRENT = 'current'
const CURRENT_TMP_PREFIX = '.current.tmp-'

const randomHex = () => randomBytes(6).toString('hex')

/** `20261124T021500Z-<first 12 of sha>`: sorts by time as a string, UTC, no `:` (filesystem-safe). */
export const releaseId = (now: Date, commit: string): string => {
  if (!/^[0-9a-f]{12,64}$/i.test(commit)) {
    throw new AgentError(`not a commit SHA: "${commit}"`, {
      code: 'RELEASE_ID_INVALID',
      remedy: 'pass the full hex commit SHA that was fetched',
    })
  }
  const stamp = now.toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/[-:]/g, '')
  return `${stamp}-${commit.slice(0, 12).toLowerCase()}`
}

const ID_RE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z-([0-9a-f]{12})$/

/** Undefined for anything that is not a release id, which also keeps `..` and `/` out of paths. */
export const parseReleaseId = (id: string): { createdAt: Date; shortSha: string } | undefined => {
  const m = ID_RE.exec(id)
  if (!m) return undefined
  const [, y, mo, d, h, mi, s, sha] = m
  const createdAt = new Date(`${y}-${mo}-${d}T${h}:${mi}:${s}Z`)
  // Reject impossible dates (month 13, Feb 30) that Date would roll over or refuse.
  if (Number.isNaN(createdAt.getTime()) || releaseId(createdAt, `${sha}`) !== id) return undefined
  return { createdAt, shortSha: `${sha}` }
}

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

const parseMeta = (raw: string): ReleaseMeta | undefined => {
  const o = parseJsonObject(raw)
  if (!o) return undefined
  const { id, commit, branch, createdAt, installKey, good } = o
  if (typeof id !== 'string' || typeof commit !== 'string' || typeof branch !== 'string') return undefined
  if (typeof createdAt !== 'string') return undefined
  if (installKey !== undefined && typeof installKey !== 'string') return undefined
  if (good !== undefined && typeof good !== 'boolean') return undefined
  const meta: ReleaseMeta = { id, commit, branch, createdAt }
  if (installKey !== undefined) meta.installKey = installKey
  if (good !== undefined) meta.good = good
  return meta
}

/** Undefined when the release is incomplete: no marker, or one that does not parse. */
export const readReleaseMeta = async (releaseDir: string): Promise<ReleaseMeta | undefined> => {
  try {
    return parseMeta(await readFile(join(releaseDir, RELEASE_MARKER), 'utf8'))
  } catch (e) {
    const code = errnoCode(e)
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined
    throw e
  }
}

/** Written last, atomically (fsynced temp + rename), so its presence means everything before it
 * finished and a crash never leaves a half-written marker. */
export const markReleaseComplete = async (releaseDir: string, meta: ReleaseMeta): Promise<void> => {
  if (meta.id !== basename(releaseDir)) {
    throw new AgentError(`release meta for "${meta.id}" written into ${releaseDir}`, {
      code: 'RELEASE_META_MISMATCH',
      remedy: 'this is a bug in the agent: report it with the log of this run',
    })
  }
  const json = `${JSON.stringify(meta, null, 2)}\n`
  await writeFileAtomic(join(releaseDir, RELEASE_MARKER), json, { mode: 0o644 })
}

export const markReleaseGood = async (releaseDir: string): Promise<ReleaseMeta> => {
  const meta = await readReleaseMeta(releaseDir)
  if (!meta) throw incomplete(releaseDir)
  const updated = { ...meta, good: true }
  await markReleaseComplete(releaseDir, updated)
  return updated
}

const incomplete = (dir: string) =>
  new AgentError(`release ${dir} is incomplete (no ${RELEASE_MARKER})`, {
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
  const st = await stat(abs).catch(() => undefined)
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
  serviceDir: string,
  releaseId: string,
): Promise<{ previous?: string }> => {
  const dir = releasePath(serviceDir, releaseId)
  const meta = await readReleaseMeta(dir)
  if (!meta || meta.id !== releaseId) throw incomplete(dir)
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

/** rm -rf of one release; refuses the live one. */
export const removeRelease = async (serviceDir: string, id: string): Promise<void> => {
  const dir = releasePath(serviceDir, id)
  if ((await readCurrent(serviceDir)) === id) {
    throw new AgentError(`refusing to remove release ${id}: \`current\` points to it`, {
      code: 'RELEASE_IN_USE',
      remedy: 'switch to another release first',
    })
  }
  // Marker first: if rm is killed halfway, what is left reads as incomplete and is never switched to.
  await unlink(join(dir, RELEASE_MARKER)).catch(() => undefined)
  await rm(dir, { recursive: true, force: true })
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

