import type { Phase } from '../runner.js'
import { type RunContext } from '../run-context.js'

/** Who this instance is and its tags (IMDSv2 on AWS, --tag flags locally). Read-only. */
export const identify: Phase<RunContext> = {
  name: 'identify',
  async run(ctx) {
    ctx.identity = await ctx.seams.identity.identify()
    const id = ctx.identity
    return { detail: `${id.instanceId} via ${id.source}${id.lifecycleState ? `, ${id.lifecycleState}` : ''}` }
  },
}
