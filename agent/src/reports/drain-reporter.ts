/**
 * A drain's report (watch/loop.ts sends it before the terminating hook is answered). The group is
 * the watch's own setting (agent.env, the environment, flags), `{environment}` and `{service}`
 * named by the last run's state.json (written by root, under the run lock); without a setting of
 * its own, the group the last run reported to (it may come from the agent configuration
 * parameter, which the watch does not read before a drain).
 */
import { reportLogGroupName, type WatchSettings } from '../config/settings.js'
import { messageOf } from '../core/errors.js'
import type { Logger } from '../core/logger.js'
import type { RunState } from '../run/state.js'
import type { Scrubber } from '../secrets/redact.js'
import { VERSION } from '../version.js'
import type { DrainRecord, WatchState } from '../watch/state.js'
import { drainReport } from './report.js'
import { deliverReport, type ReportSink } from './sink.js'

export interface DrainReporterOptions {
  settings: Pick<WatchSettings, 'reportLogGroupTemplate'>
  log: Logger
  scrubber: Scrubber
  /** the last run's state.json */
  lastRun: () => Promise<RunState | undefined>
  sink: (group: string, region: string) => ReportSink
  /** AWS_REGION, which wins over the instance's region (as for the run's report) */
  region: string | undefined
  now: () => Date
  deadlineMs?: number
}

/** The report log group of a drain, or undefined (off, or not nameable: logged). */
export const drainReportGroup = (template: string | undefined, last: RunState | undefined, log: Logger): string | undefined => {
  if (template === undefined) return last?.reportLogGroup
  if (!/\{(environment|service)\}/.test(template)) return template
  if (!last?.service || !last.environment) {
    log.warn({ reportLogGroup: template }, 'drain report not sent: no run recorded the service and environment its log group names')
    return undefined
  }
  try {
    return reportLogGroupName(template, 'BOOTSTRAP_REPORT_LOG_GROUP', last.environment, last.service)
  } catch (e) {
    log.warn({ reportLogGroup: template, error: messageOf(e) }, 'drain report not sent')
    return undefined
  }
}

export const createDrainReporter = (o: DrainReporterOptions) =>
  async (drain: DrainRecord, st: WatchState, id: { instanceId: string; region: string } | undefined, hookAfter: boolean): Promise<void> => {
    const last = await o.lastRun().catch(() => undefined)
    const group = drainReportGroup(o.settings.reportLogGroupTemplate, last, o.log)
    if (group === undefined) return
    if (!id) {
      o.log.warn({ reportLogGroup: group }, 'drain report not sent: the instance was not identified (its id names the stream)')
      return
    }
    const report = drainReport({
      agentVersion: VERSION,
      instanceId: id.instanceId,
      at: o.now(),
      ...(hookAfter ? { hookAfter: 'CONTINUE' } : {}),
      scrubber: o.scrubber,
      drain,
      watch: st,
      ...(last?.service ? { service: last.service } : {}),
      ...(last?.environment ? { environment: last.environment } : {}),
    })
    await deliverReport({ sink: o.sink(group, o.region || id.region), report, log: o.log, ...(o.deadlineMs === undefined ? {} : { deadlineMs: o.deadlineMs }) })
  }
