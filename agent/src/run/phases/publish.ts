import { need, type RunContext } from '../context.js'
import type { Phase, PhaseResult } from '../runner.js'
import { markReleasePublished, readReleaseRecord } from '../../releases/records.js'
import { publishRelease } from '../../releases/cache-publish.js'
import { messageOf } from '../../core/errors.js'
import { currentRuntime } from '../../releases/cache-key.js'
import { openCache, workerOptions } from './release-cache.js'

/**
 * The live release into the release cache (releases/cache-publish.ts), after a successful run
 * and after the lifecycle hook was completed: the instance is InService before a byte is packed.
 * Only a release that passed its health gate here, built from source, not published yet: a run
 * that finds its release unpublished (a publication cut short, a warm-pool release now healthy,
 * a cache configured after the deploy) publishes it, so the cache converges. A failure is a
 * warning in the log and in state.json, never the run's outcome.
 */
export const publish: Phase<RunContext> = {
  name: 'publish',
  async run(ctx) {
    const s = need(ctx.settings, 'settings')
    if (!s.releaseCache) return { status: 'skipped', detail: 'no release cache configured' }
    const cache = (ctx.cache ??= { location: s.releaseCache.url })
    const done = (r: PhaseResult & { detail: string }): PhaseResult => {
      cache.published = r.detail
      return r
    }
    if (ctx.warmPool) return done({ status: 'skipped', detail: 'warm pool: no health gate passed yet; published by the run that starts it' })
    const rel = need(ctx.release, 'release')
    const p = need(ctx.paths, 'paths')
    const meta = await readReleaseRecord(p.releaseRecords, rel.id)
    if (!meta?.good) return done({ status: 'skipped', detail: `release ${rel.id} has not passed its health gate` })
    if (meta.origin === 'cache') return done({ status: 'skipped', detail: `release ${rel.id} came from the release cache` })
    if (meta.published) return done({ status: 'skipped', detail: `release ${rel.id} is in the release cache (${meta.published.index})` })
    try {
      const store = need(await openCache(ctx), 'cache store')
      const r = await publishRelease({
        store, loc: s.releaseCache, worker: workerOptions(ctx), service: s.service, branch: meta.branch, commit: meta.commit,
        spec: need(ctx.spec, 'spec'), runtime: currentRuntime(), dir: rel.dir, owner: need(ctx.user, 'user').uid, completedAt: new Date(meta.createdAt),
        envFile: p.envFile, workDir: p.cacheWorkDir, publishedBy: ctx.identity?.instanceId ?? 'unknown',
        replace: cache.replaceEntry === true, now: ctx.seams.now,
      })
      const index = store.url(r.indexObject)
      await markReleasePublished(p.releaseRecords, rel.id, { at: ctx.seams.now().toISOString(), index })
      if (r.result === 'already') return done({ status: 'skipped', detail: `published already by ${r.publishedBy} (${index})` })
      if (r.excluded > 0) {
        ctx.log.info({ excluded: r.excluded, examples: r.examples }, `${r.excluded} file(s) written after the release was deployed (runtime state) left out of the archive`)
      }
      const a = r.entry.archive
      return done({ detail: `published ${index} -> ${store.url(a.object)} (${a.bytes} bytes, ${a.entries} entries)` })
    } catch (e) {
      cache.published = `not published: ${messageOf(e).split('\n')[0]}`
      throw e
    }
  },
}
