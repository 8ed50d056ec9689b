import { rm } from 'node:fs/promises'
import { serviceLogs, waitHealthy } from '../health.js'
import { markReleaseGood } from '../../releases/records.js'
import type { Phase } from '../runner.js'
import { need, type RunContext } from '../context.js'
import { clearWarmPrepared, markWarmPrepared, WARM_POOL_DETAIL } from '../../releases/warm-pool.js'
import { restartPendingFile } from './switch.js'

/** The health gate; a pass marks the release good (a rollback target from now on). */
export const verify: Phase<RunContext> = {
  name: 'verify',
  async run(ctx) {
    const s = need(ctx.settings, 'settings')
    const p = need(ctx.paths, 'paths')
    const spec = need(ctx.spec, 'spec')
    const rel = need(ctx.release, 'release')
    if (ctx.warmPool) {
      // nothing runs to check; the marker lets the run out of the pool reuse this release, and
      // `.restart-pending` stays so that run (re)starts the service on it whatever PM2 holds
      await markWarmPrepared(p.serviceDir, rel.id)
      return { status: 'skipped', detail: WARM_POOL_DETAIL }
    }
    const pm2 = (ctx.pm2 ??= ctx.seams.pm2(s, p, ctx.user))
    const r = await waitHealthy({
      app: spec.name,
      health: spec.health,
      timeoutMs: s.healthTimeoutMs,
      // nothing was restarted: the app has been online all along, no need to watch it again
      stableMs: ctx.started ? s.stableWindowMs : 0,
      // a (re)started app answers within a few hundred ms: polling at run/health.ts's default 250 ms
      // added up to a whole interval to every deploy. A poll is cheap now (the PM2 daemon's list
      // over its socket, pm2/rpc.ts, and one local HTTP request)
      pollMs: 50,
      pm2,
      logs: serviceLogs(p.appLogDir, spec.name, need(ctx.user, 'user').uid),
      scrub: t => ctx.scrubber.scrub(t),
    })
    if (r.url) ctx.url = r.url
    await markReleaseGood(p.releaseRecords, rel.id)
    // healthy on what is on disk: nothing left for a later run to restart
    await rm(restartPendingFile(p.serviceDir), { force: true })
    await clearWarmPrepared(p.serviceDir)
    return { detail: r.detail }
  },
}
