/**
 * The release cache inside a run (README "Release cache"): `fetch` asks it for the release
 * before cloning, and for the commit when the git remote cannot be reached; `publish` puts the
 * healthy release into it after the hook was completed. The cache is an accelerator, never a new
 * way to fail: every problem here is a warning naming the object and the reason, then the source
 * path, exactly as without a cache.
 */
import { readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { ensureDir } from '../../core/dirs.js'
import { preparePm2InBackground } from '../../pm2/ready.js'
import { isAgentError, messageOf, type AgentError } from '../../core/errors.js'
import type { WorkerOptions } from '../../releases/archive-process.js'
import { currentRuntime } from '../../releases/cache-key.js'
import { DOCUMENT_MAX_BYTES, parseBranchPointer, pointerKey } from '../../releases/cache-index.js'
import { restoreRelease } from '../../releases/cache-restore.js'
import type { CacheStore } from '../../releases/cache-store.js'
import { need, removeAsService, type RunContext } from '../context.js'

/** The archive worker as the service user, on the install timeout (extraction replaces npm ci). */
export const workerOptions = (ctx: RunContext): WorkerOptions => ({
  exec: ctx.seams.exec,
  user: ctx.user?.switchTo,
  timeoutMs: need(ctx.settings, 'settings').installTimeoutMs,
})

/** The store when a cache is configured, with the agent's work directory ready (root only; under
 * the run lock anything in it was left by a killed run). */
export const openCache = async (ctx: RunContext): Promise<CacheStore | undefined> => {
  const s = need(ctx.settings, 'settings')
  const p = need(ctx.paths, 'paths')
  const store = await ctx.seams.cacheStore(s)
  if (!store) return undefined
  ctx.cache ??= { location: store.location }
  await ensureDir(p.cacheWorkDir, 0o700)
  for (const name of await readdir(p.cacheWorkDir)) await rm(join(p.cacheWorkDir, name), { recursive: true, force: true })
  return store
}

/** git could not reach the remote at all (after its attempts): the only case the pointer covers.
 * A refused credential or a missing branch is an answer, and must stay an error. */
const unreachable = (e: unknown): e is AgentError => isAgentError(e) && (e.code === 'GIT_UNREACHABLE' || e.code === 'GIT_TIMEOUT')

/**
 * The commit the cache's branch pointer names, when `gitError` says the remote could not be
 * reached and the fallback is on; otherwise `gitError` is thrown as it would be without a cache.
 */
export const commitFromPointer = async (ctx: RunContext, store: CacheStore | undefined, gitError: unknown): Promise<string> => {
  const s = need(ctx.settings, 'settings')
  if (!store || !s.releaseCacheFallback || !unreachable(gitError)) throw gitError
  const object = pointerKey(need(s.releaseCache, 'release cache'), s.service, s.branch, currentRuntime())
  let text: string | undefined
  try {
    text = await store.getText(object, DOCUMENT_MAX_BYTES)
  } catch (e) {
    ctx.log.warn({ object: store.url(object), reason: messageOf(e) }, 'release cache: the branch pointer could not be read either')
    throw gitError
  }
  const pointer = text === undefined ? 'there is none' : parseBranchPointer(text, { service: s.service, branch: s.branch })
  if (typeof pointer === 'string') {
    ctx.log.warn({ object: store.url(object), reason: pointer }, 'release cache: no usable branch pointer')
    throw gitError
  }
  const note = `branch pointer ${store.url(object)} (published ${pointer.publishedAt}); the git remote could not be reached: ${gitError.message.split('\n')[0]}`
  need(ctx.cache, 'cache').commitFromPointer = note
  ctx.log.warn({ commit: pointer.commit, object: store.url(object), publishedAt: pointer.publishedAt, gitError: gitError.code }, `git remote unreachable: deploying ${pointer.commit.slice(0, 12)}, the last commit the release cache published healthy for ${s.service} on ${s.branch}`)
  return pointer.commit
}

/** A release from the cache as `<releases>/<id>` (ctx.release and ctx.spec set), or undefined
 * after a miss or a warning: then the caller builds from source. */
export const restoreFromCache = async (ctx: RunContext, store: CacheStore, id: string, commit: string): Promise<{ dir: string; detail: string } | undefined> => {
  const s = need(ctx.settings, 'settings')
  const p = need(ctx.paths, 'paths')
  const cache = need(ctx.cache, 'cache')
  // PM2's daemon spawn (~0.5 s) overlaps the download and extraction, as it overlaps npm ci on
  // the source path; `start` awaits it (pm2/ready.ts)
  if (!ctx.warmPool) preparePm2InBackground(ctx)
  const r = await restoreRelease({
    store, loc: need(s.releaseCache, 'release cache'), worker: workerOptions(ctx), service: s.service, manifestFile: s.manifestFile,
    commit, runtime: currentRuntime(), paths: p, id, owner: need(ctx.user, 'user').uid, removeTree: removeAsService(ctx), workDir: p.cacheWorkDir,
  })
  if (r.result === 'miss') {
    cache.lookup = `miss: ${r.object}`
    ctx.log.info({ object: r.object }, 'release cache: no entry for this commit; deploying from source, publishing after the health gate')
    return undefined
  }
  if (r.result === 'unusable') {
    cache.lookup = `unusable: ${r.reason} (${r.object})`
    cache.replaceEntry = r.entryBad
    ctx.log.warn({ object: r.object, reason: r.reason }, 'release cache: entry not used; deploying from source')
    return undefined
  }
  cache.lookup = `hit: ${r.object}`
  ctx.spec = r.spec
  // read before any code of the release ran, like install's: later releases may reuse its node_modules
  if (r.installKey) ctx.installKey = r.installKey
  ctx.release = { id, dir: r.dir, serviceDir: join(r.dir, r.spec.path), commit, reused: false, origin: 'cache' }
  const { download, verify, extract } = r.ms
  return {
    dir: r.dir,
    detail: `restored ${commit.slice(0, 12)} from the release cache into ${id} (${r.entry.archive.bytes} bytes; download ${download} ms, sha256 ${verify} ms, extract ${extract} ms)`,
  }
}
