import { join } from 'node:path'
import { listReleases, pickReleasesToPrune, readCurrent, readReleaseMeta, removeRelease } from '../../releases/releases.js'
import type { Phase } from '../runner.js'
import { need, type RunContext } from '../context.js'

/** Keep the newest N good releases; never the live one or the last good one. */
export const cleanup: Phase<RunContext> = {
  name: 'cleanup',
  async run(ctx) {
    const s = need(ctx.settings, 'settings')
    const p = need(ctx.paths, 'paths')
    const releases = await listReleases(p.serviceDir)
    const good: string[] = []
    for (const id of releases) if ((await readReleaseMeta(join(p.releasesDir, id)))?.good) good.push(id)
    const live = await readCurrent(p.serviceDir)
    const lastGood = good[good.length - 1]
    const prune = pickReleasesToPrune({ releases, good, keep: s.keepReleases, ...(live ? { live } : {}), ...(lastGood ? { lastGood } : {}) })
    for (const id of prune) await removeRelease(p.serviceDir, id)
    return prune.length ? { detail: `removed ${prune.join(', ')}` } : { status: 'skipped', detail: `${releases.length} release(s), nothing to remove` }
  },
}
