import { pathsFor } from '../../core/paths.js'
import type { Phase } from '../runner.js'
import { need, type RunContext } from '../context.js'
import { resolveWithAgentConfig } from '../../config/resolve-settings.js'
import { effectiveSettings } from '../../config/settings.js'

/** Tags + flags + environment -> Settings (pure); logs every effective value (none is secret). */
export const resolve: Phase<RunContext> = {
  name: 'resolve',
  async run(ctx) {
    const id = need(ctx.identity, 'identity')
    const { settings: s, configSource } = await resolveWithAgentConfig(ctx.input, id, ctx.seams)
    ctx.settings = s
    ctx.paths = pathsFor(s.root, s.service)
    ctx.hook = ctx.seams.hook(s, id)
    // heartbeats run from here through the long phases until `complete`
    await ctx.hook.begin()
    ctx.log.info({ settings: effectiveSettings(s), agentConfig: configSource ?? 'none', lifecycleHook: ctx.hook.description }, 'effective settings')
    return { detail: `${s.service} ${s.environment} -> branch ${s.branch} (${s.branchSource}) of ${s.repository}` }
  },
}
