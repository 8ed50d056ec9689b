import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileAtomic } from '../../core/atomic-write.js'
import { messageOf, type AgentError } from '../../core/errors.js'
import { serviceLogs, waitHealthy } from '../health.js'
import { readReleaseRecord } from '../../releases/records.js'
import { listReleases, removeRelease, switchCurrent } from '../../releases/releases.js'
import type { PhaseResult } from '../runner.js'
import { loadServiceSpec, type ServiceSpec } from '../../config/manifest.js'
import { need, removeAsService, serviceTree, type RunContext } from '../context.js'
import { ecosystemFor } from './start.js'

/**
 * After a failure past `switch`: put back what was live (the previous release and env file) and
 * reload it; with nothing to go back to, stop the app so a broken release is not left serving.
 * Before `switch` nothing live changed, so there is nothing to do.
 */
/** The manifest of the release being restored; should it no longer load (an agent upgrade that
 * tightened the schema), the failed release's spec is the best left. */
const restoredSpec = async (ctx: RunContext, dir: string): Promise<ServiceSpec> => {
  const s = need(ctx.settings, 'settings')
  const spec = need(ctx.spec, 'spec')
  try {
    return await loadServiceSpec(serviceTree(ctx, dir), s.manifestFile, s.service)
  } catch (e) {
    ctx.log.warn({ release: dir, error: messageOf(e) }, 'the restored release manifest does not load; keeping the current PM2 definition')
    return spec
  }
}

export const rollback = async (ctx: RunContext, _err: AgentError): Promise<PhaseResult> => {
  const sw = ctx.switched
  const p = ctx.paths
  const s = ctx.settings
  const spec = ctx.spec
  const rel = ctx.release
  if (!sw || !p || !s || !spec) {
    // a release cloned by this run that never went live is of no use to anyone
    if (p && rel && !rel.reused && rel.id !== ctx.liveRelease) {
      await removeRelease(p, rel.id, removeAsService(ctx))
      return { detail: `nothing live was changed; removed the unused release ${rel.id}` }
    }
    return { status: 'skipped', detail: 'nothing live was changed' }
  }
  const pm2 = (ctx.pm2 ??= ctx.seams.pm2(s, p, ctx.user))
  let previous = sw.previousRelease
  let prevMeta = previous ? await readReleaseRecord(p.releaseRecords, previous) : undefined
  if (sw.release && prevMeta?.good !== true) {
    // `current` was on a release that never passed its health check (a run killed between switch
    // and verify): go back to the newest good release instead of stopping the service
    for (const id of (await listReleases(p.serviceDir)).reverse()) {
      const meta = await readReleaseRecord(p.releaseRecords, id)
      if (meta?.good === true) {
        previous = id
        prevMeta = meta
        break
      }
    }
  }
  const canRestore = sw.release ? prevMeta?.good === true : true
  if (!canRestore) {
    if (ctx.started) {
      await pm2.delete(spec.name).catch(() => undefined)
      await pm2.save()
    }
    return { detail: `no previous good release: ${spec.name} stopped` }
  }
  if (sw.env && ctx.previousEnvText !== undefined) {
    await writeFileAtomic(p.envFile, ctx.previousEnvText, { mode: 0o600, ...(ctx.user?.switchTo ?? {}) })
  }
  if (sw.release && previous) await switchCurrent(p, previous)
  ctx.rolledBack = true
  // the restored release's own PM2 definition and health check: the failed one may have moved
  // its port, start command or health URL, and reloading its definition would run the old code
  // on the new settings (and check the wrong URL)
  const restored = sw.release && previous ? await restoredSpec(ctx, join(p.releasesDir, previous)) : spec
  const eco = ecosystemFor(restored, p)
  const written = await readFile(p.ecosystem, 'utf8').catch(() => undefined)
  const definitionChanged = written !== eco
  if (definitionChanged) await writeFileAtomic(p.ecosystem, eco, { mode: 0o644 })
  if (ctx.started) {
    if (definitionChanged) await pm2.start(p.ecosystem, restored.name, true)
    else await pm2.reload(p.ecosystem)
    await pm2.save()
    await waitHealthy({
      app: restored.name, health: restored.health, timeoutMs: s.healthTimeoutMs, stableMs: s.stableWindowMs, pm2,
      logs: serviceLogs(p.appLogDir, restored.name, need(ctx.user, 'user').uid), scrub: t => ctx.scrubber.scrub(t),
    })
  }
  const how = definitionChanged ? ' on its own PM2 definition' : ''
  return { detail: `back on ${previous ?? 'the previous env file'}${how}${ctx.started ? ', healthy' : ''}` }
}
