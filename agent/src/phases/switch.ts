import { writeFileAtomic, removeStaleTemps } from '../atomic-write.js'
import { ensureDir } from '../dirs.js'
import { basename } from 'node:path'
import { switchCurrent } from '../releases.js'
import type { Phase } from '../runner.js'
import { need, type RunContext } from '../run-context.js'

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
    if (!releaseChanged && !ctx.envChanged) return { status: 'skipped', detail: 'release and env file unchanged' }
    ctx.switched = { release: false, env: false, previousRelease: ctx.liveRelease }
    if (ctx.envChanged) {
      await writeFileAtomic(p.envFile, envText, { mode: 0o600, ...(owner ?? {}) })
      ctx.switched.env = true
    }
    if (releaseChanged) {
      await switchCurrent(p.serviceDir, rel.id)
      ctx.switched.release = true
    }
    const what = [ctx.switched.release && `current -> ${rel.id}`, ctx.switched.env && 'env file replaced'].filter(Boolean)
    return { detail: what.join(', ') }
  },
}
