/**
 * A run's report, sent once: before the ABANDON when the run failed (a terminated instance takes
 * its state.json and logs with it), else when the run has finished. Where it goes is the run's
 * report log group; when the settings could not be resolved (a bad tag), the group is named from
 * the layers below them if it can be (config/settings.ts, reportLogGroupOf).
 */
import type { AgentError } from '../core/errors.js'
import { reportLogGroupOf } from '../config/settings.js'
import type { RunContext } from '../run/context.js'
import type { RunState } from '../run/state.js'
import { VERSION } from '../version.js'
import { runReport, servingAfter } from './report.js'
import { deliverReport, type Delivery } from './sink.js'

export interface RunReporter {
  /** the first call sends (within the report's deadline, never throwing); later calls do nothing */
  send(state: RunState, failure: AgentError | undefined, hookAfter?: string): Promise<Delivery | undefined>
}

export const createRunReporter = (ctx: RunContext, deadlineMs?: number): RunReporter => {
  let sent = false
  return {
    async send(state, failure, hookAfter) {
      if (sent) return undefined
      sent = true
      const id = ctx.identity
      const group = ctx.settings ? ctx.settings.reportLogGroup : id && reportLogGroupOf({ ...ctx.input, tags: id.tags })
      if (group === undefined) return undefined
      if (!id) {
        ctx.log.warn({ reportLogGroup: group }, 'run report not sent: the instance was not identified (its id names the stream)')
        return undefined
      }
      const sink = ctx.seams.reportSink(group, id)
      if (!sink) {
        ctx.log.info({ reportLogGroup: group, mode: ctx.input.mode }, 'run report not sent: run reports go to CloudWatch Logs (AWS mode with a region only)')
        return undefined
      }
      const report = runReport({
        agentVersion: VERSION,
        instanceId: id.instanceId,
        at: ctx.seams.now(),
        ...(hookAfter === undefined ? {} : { hookAfter }),
        scrubber: ctx.scrubber,
        state,
        evidence: failure?.evidence ?? [],
        serving: servingAfter({
          failed: failure !== undefined,
          warmPool: ctx.warmPool !== undefined,
          ...(ctx.release ? { release: { id: ctx.release.id, commit: ctx.release.commit } } : {}),
          ...(ctx.liveRelease === undefined ? {} : { liveRelease: ctx.liveRelease }),
          switched: ctx.switched !== undefined,
          rolledBack: ctx.rolledBack === true,
        }),
      })
      return deliverReport({ sink, report, log: ctx.log, ...(deadlineMs === undefined ? {} : { deadlineMs }) })
    },
  }
}
