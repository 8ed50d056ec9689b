import { listReleaseRecords, readReleaseRecord, removeReleaseRecord } from '../../releases/records.js'
import { listReleases, pickReleasesToPrune, readCurrent, removeRelease } from '../../releases/releases.js'
import type { Phase } from '../runner.js'
import { need, removeAsService, type RunContext } from '../context.js'

/**
 * Keep the newest N good releases; never the live one or the last good one. A release without a
 * record (a failed one, or one of an earlier agent that kept its record inside the release) is not
 * good; records whose release is gone are dropped. Removals run as the service user.
 */
export const cleanup: Phase<RunContext> = {
  name: 'cleanup',
  async run(ctx) {
    const s = need(ctx.settings, 'settings')
    const p = need(ctx.paths, 'paths')
    const releases = await listReleases(p.serviceDir)
    const good: string[] = []
    for (const id of releases) if ((await readReleaseRecord(p.releaseRecords, id))?.good) good.push(id)
    const live = await readCurrent(p.serviceDir)
    const lastGood = good[good.length - 1]
    const prune = pickReleasesToPrune({ releases, good, keep: s.keepReleases, ...(live ? { live } : {}), ...(lastGood ? { lastGood } : {}) })
    for (const id of prune) await removeRelease(p, id, removeAsService(ctx))
    const orphans = (await listReleaseRecords(p.releaseRecords)).filter(id => !releases.includes(id))
    for (const id of orphans) await removeReleaseRecord(p.releaseRecords, id)
    return prune.length ? { detail: `removed ${prune.join(', ')}` } : { status: 'skipped', detail: `${releases.length} release(s), nothing to remove` }
  },
}
