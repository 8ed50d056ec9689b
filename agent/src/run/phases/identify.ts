import type { Phase } from '../runner.js'
import { type RunContext } from '../context.js'
import { warmPoolTarget } from '../../releases/warm-pool.js'

/** Who this instance is and its tags (IMDSv2 on AWS, --tag flags locally). Read-only. */
export const identify: Phase<RunContext> = {
  name: 'identify',
  async run(ctx) {
    ctx.identity = await ctx.seams.identity.identify()
    const id = ctx.identity
    // launched into a warm pool: prepare, start nothing (releases/warm-pool.ts)
    ctx.warmPool = warmPoolTarget(id.lifecycleState)
    const warm = ctx.warmPool ? ' (warm pool: prepare only, start nothing)' : ''
    return { detail: `${id.instanceId} via ${id.source}${id.lifecycleState ? `, ${id.lifecycleState}` : ''}${warm}` }
  },
}
