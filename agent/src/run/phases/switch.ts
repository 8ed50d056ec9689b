import { writeFileAtomic, removeStaleTemps } from '../../core/atomic-write.js'
import { ensureDir, exists } from '../../core/dirs.js'
import { basename, join } from 'node:path'
import { switchCurrent } from '../../releases/releases.js'
import type { Phase } from '../runner.js'
import { need, type RunContext } from '../context.js'

/**
 * Written before `switch` changes anything live, removed by `verify` once the service runs what is
 * on disk. A run killed in between leaves it: the next run finds the env file and `current`
 * already matching its inputs, and without it would leave the service on the old secrets.
 */
export const restartPendingFile = (serviceDir: string): string => join(serviceDir, '.restart-pending')

/**
 * The one phase that changes what is live: the env file (atomic, 0600, owned by the service
 * user) and the `current` symlink (atomic rename). From here on a failure rolls back.
 */
export const switchPhase: Phase<RunContext> = {
  name: 'switch',
  async run(ctx) {
    const rel = need(ctx.release, 'release')
    const p = need(ctx.paths, 'paths')
    const envText = need(ctx.envText, 'envText')
    const owner = ctx.user?.switchTo
    await ensureDir(p.etcDir, 0o755)
    await ensureDir(p.envDir, 0o700, owner)
    await removeStaleTemps(p.envDir, basename(p.envFile))
    const releaseChanged = !rel.reused || ctx.liveRelease !== rel.id
    const pending = restartPendingFile(p.serviceDir)
    // leftovers of a run killed while writing the marker or the ecosystem file (no secrets in either)
    for (const f of [pending, p.ecosystem]) await removeStaleTemps(p.serviceDir, basename(f))
    const interrupted = await exists(pending)
    if (!releaseChanged && !ctx.envChanged && !interrupted) return { status: 'skipped', detail: 'release and env file unchanged' }
    await writeFileAtomic(pending, '', { mode: 0o644 })
    // set even when nothing changes here: `start` then restarts the service on what is on disk
    ctx.switched = { release: false, env: false, previousRelease: ctx.liveRelease }
    if (ctx.envChanged) {
      await writeFileAtomic(p.envFile, envText, { mode: 0o600, ...(owner ?? {}) })
      ctx.switched.env = true
    }
    if (releaseChanged) {
      await switchCurrent(p, rel.id)
      ctx.switched.release = true
    }
    const what = [ctx.switched.release && `current -> ${rel.id}`, ctx.switched.env && 'env file replaced'].filter(Boolean)
    return { detail: what.length ? what.join(', ') : 'unchanged, but the service was never (re)started on it (an interrupted run, or a warm-pool prepare)' }
  },
}
