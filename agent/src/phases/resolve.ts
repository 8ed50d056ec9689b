import { pathsFor } from '../paths.js'
import type { Phase } from '../runner.js'
import { need, type RunContext } from '../run-context.js'
import { effectiveSettings, resolveSettings } from '../settings.js'

/** Tags + flags + environment -> Settings (pure); logs every effective value (none is secret). */
export const resolve: Phase<RunContext> = {
  name: 'resolve',
  async run(ctx) {
    const id = need(ctx.identity, 'identity')
    const s = resolveSettings({ ...ctx.input, tags: id.tags })
    ctx.settings = s
    ctx.paths = pathsFor(s.root, s.service)
    ctx.hook = ctx.seams.hook(s, id)
    // heartbeats run from here through the long phases until `complete`
    await ctx.hook.begin()
    ctx.log.info({ settings: effectiveSettings(s), lifecycleHook: ctx.hook.description }, 'effective settings')
    return { detail: `${s.service} ${s.environment} -> branch ${s.branch} (${s.branchSource}) of ${s.repository}` }
  },
}
