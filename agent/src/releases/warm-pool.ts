/**
 * Warm pools. An instance launched into an Auto Scaling warm pool has the IMDS target lifecycle
 * state `Warmed:Stopped` (or `Warmed:Running`, `Warmed:Hibernated`) and waits in
 * `Warmed:Pending:Wait` on the launching hook. Such a run prepares everything (fetch, secrets,
 * install, build, switch) but starts nothing, then completes the hook: the instance is about to be
 * stopped or parked, and nothing may serve from the pool. When the instance later leaves the pool
 * (target `InService`, `Pending:Wait`), the next run finds the prepared release live and only
 * starts it.
 *
 * The prepared marker (`<serviceDir>/.warm-prepared`, the release id) is what lets that later run
 * reuse a release that never passed its health check: without it `fetch` only reuses a *good*
 * release, and the whole point of the pool (no clone, no `npm ci` on the way in) would be lost.
 * `verify` removes it once the release is healthy (it is then good, which says the same and more).
 */
import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileAtomic } from '../core/atomic-write.js'
import { errnoCode } from '../core/errors.js'

/** The phase detail of `start` and `verify` in a warm-pool run. */
export const WARM_POOL_DETAIL = 'warm pool: prepared, not started'

/** The Warmed:* target state when this run must only prepare; undefined for a normal run. */
export const warmPoolTarget = (targetLifecycleState: string | undefined): string | undefined =>
  targetLifecycleState?.startsWith('Warmed:') ? targetLifecycleState : undefined

export const warmPreparedFile = (serviceDir: string): string => join(serviceDir, '.warm-prepared')

export const markWarmPrepared = async (serviceDir: string, releaseId: string): Promise<void> => {
  await writeFileAtomic(warmPreparedFile(serviceDir), `${releaseId}\n`, { mode: 0o644 })
}

/** Whether `releaseId` is the release a warm-pool run prepared (and no run has verified since). */
export const isWarmPrepared = async (serviceDir: string, releaseId: string): Promise<boolean> => {
  try {
    return (await readFile(warmPreparedFile(serviceDir), 'utf8')).trim() === releaseId
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return false
    throw e
  }
}

export const clearWarmPrepared = (serviceDir: string): Promise<void> => rm(warmPreparedFile(serviceDir), { force: true })
