/**
 * `fleet`: the instances of a service and environment now, and the last run of each. The
 * instances come from EC2 (by their tags, every state but terminated) and Auto Scaling (group,
 * lifecycle state, health: DescribeAutoScalingInstances, 50 ids a call); each one's last run from
 * the newest events of its stream in the report log group (GetLogEvents, newest first: one call
 * for most instances, whatever the age of the run). What each instance serves, side by side, is
 * the drift between them.
 */
import type { AutoScalingApi } from '../aws/lifecycle-hook.js'
import type { LogsReaderApi } from '../aws/cloudwatch-logs.js'
import { classifyAwsError, withRetry, type RetryOptions } from '../aws/retry.js'
import type { Ec2InstancesApi } from '../aws/ssm-commands.js'
import { isAgentError, messageOf } from '../core/errors.js'
import { parseReport, type RunReport } from '../reports/report.js'
import { groupMissing } from './history.js'
import { findInstances, forOperator, PRESENT_STATES, type InstanceQuery } from './instances.js'

export interface FleetDeps {
  ec2: Ec2InstancesApi
  autoscaling: Pick<AutoScalingApi, 'describeAutoScalingInstances'>
  logs: LogsReaderApi
  retry?: RetryOptions
  now?: () => number
}

export interface FleetQuery extends InstanceQuery {
  group: string
  region: string
}

export interface LastRun {
  runId: string
  /** when the run finished (or its report was made) */
  at: string
  ageMs: number
  reason: string
  outcome: string
  commit?: string
  errorCode?: string
  /** what serves after it (reports/report.ts, RunReport.serving) */
  serving?: { release: string; commit: string }
}

export interface FleetInstance {
  instanceId: string
  /** EC2's instance state */
  state: string
  /** the Auto Scaling group, undefined: in none */
  group?: string
  lifecycleState?: string
  health?: string
  lastRun?: LastRun
  /** why the last run is not known (no report, or it could not be read) */
  note?: string
}

export interface FleetView {
  instances: FleetInstance[]
  /** the commits served (12 digits; "none" where nothing serves), with how many instances serve each */
  serving: { commit: string; instances: string[] }[]
}

/** Auto Scaling takes at most 50 InstanceIds per DescribeAutoScalingInstances */
const IDS_PER_CALL = 50
/** newest events read per GetLogEvents: a drain report may come after the last run's */
const EVENTS_PER_PAGE = 10
const MAX_PAGES = 5

const lastRunOf = (r: RunReport, now: number): LastRun => {
  const at = r.run.finishedAt ?? r.at
  return {
    runId: r.run.runId, at, ageMs: Math.max(0, now - Date.parse(at)), reason: r.run.reason, outcome: r.run.outcome,
    ...(r.run.commit === undefined ? {} : { commit: r.run.commit }),
    ...(r.run.error?.code === undefined ? {} : { errorCode: r.run.error.code }),
    ...(r.serving === undefined ? {} : { serving: r.serving }),
  }
}

/** The newest run report in the instance's stream (drain reports are skipped), or why there is none. */
export const lastRun = async (deps: FleetDeps, q: FleetQuery, instanceId: string): Promise<{ run?: RunReport; note?: string }> => {
  let nextToken: string | undefined
  for (let page = 0; page < MAX_PAGES; page++) {
    let r
    try {
      r = await withRetry({ service: 'logs', action: 'GetLogEvents', resource: `${q.group}:${instanceId}` }, async () => {
        try {
          return await deps.logs.getLogEvents({
            logGroupName: q.group, logStreamName: instanceId, startFromHead: false, limit: EVENTS_PER_PAGE, ...(nextToken ? { nextToken } : {}),
          })
        } catch (e) {
          // no stream: this instance never sent a report (reports off, or its boot still running)
          if (classifyAwsError(e).code === 'ResourceNotFoundException' && /stream/i.test(classifyAwsError(e).message)) return undefined
          throw e
        }
      }, deps.retry)
    } catch (e) {
      throw forOperator(groupMissing(q, e))
    }
    if (!r) return { note: 'no run report' }
    const runs = (r.events ?? []).flatMap(ev => {
      const rep = parseReport(ev.message ?? '')
      return rep?.kind === 'run' && rep.instanceId === instanceId ? [rep] : []
    })
    if (runs.length > 0) return { run: runs.sort((a, b) => b.at.localeCompare(a.at))[0] as RunReport }
    // going back: an unchanged token means the start of the stream
    if (!r.nextBackwardToken || r.nextBackwardToken === nextToken || (r.events ?? []).length === 0) break
    nextToken = r.nextBackwardToken
  }
  return { note: 'no run report' }
}

export const fleetView = async (deps: FleetDeps, q: FleetQuery): Promise<FleetView> => {
  const now = (deps.now ?? Date.now)()
  const found = await findInstances(deps.ec2, q, PRESENT_STATES, deps.retry)
  const asg = new Map<string, { group?: string; lifecycleState?: string; health?: string }>()
  for (let i = 0; i < found.length; i += IDS_PER_CALL) {
    const InstanceIds = found.slice(i, i + IDS_PER_CALL).map(f => f.instanceId)
    const r = await withRetry({ service: 'autoscaling', action: 'DescribeAutoScalingInstances', resource: InstanceIds.join(',') },
      () => deps.autoscaling.describeAutoScalingInstances({ InstanceIds }), deps.retry).catch((e: unknown) => {
      throw forOperator(e)
    })
    for (const a of r.AutoScalingInstances ?? []) {
      if (!a.InstanceId) continue
      asg.set(a.InstanceId, {
        ...(a.AutoScalingGroupName ? { group: a.AutoScalingGroupName } : {}),
        ...(a.LifecycleState ? { lifecycleState: a.LifecycleState } : {}),
        ...(a.HealthStatus ? { health: a.HealthStatus } : {}),
      })
    }
  }
  const instances: FleetInstance[] = []
  for (const f of found) {
    const last: { run?: RunReport; note?: string } = await lastRun(deps, q, f.instanceId).catch((e: unknown) => {
      // one unreadable stream must not hide the rest of the fleet; a missing group hides all
      if (isAgentError(e) && e.code === 'REPORT_GROUP_MISSING') throw e
      return { note: `run report not read: ${messageOf(e)}` }
    })
    instances.push({
      instanceId: f.instanceId, state: f.state, ...asg.get(f.instanceId),
      ...(last.run ? { lastRun: lastRunOf(last.run, now) } : {}),
      ...(last.note ? { note: last.note } : {}),
    })
  }
  const by = new Map<string, string[]>()
  for (const i of instances) {
    const c = i.lastRun?.serving?.commit.slice(0, 12) ?? (i.lastRun ? 'none' : 'unknown')
    by.set(c, [...(by.get(c) ?? []), i.instanceId])
  }
  const serving = [...by].map(([commit, ids]) => ({ commit, instances: ids })).sort((a, b) => b.instances.length - a.instances.length || a.commit.localeCompare(b.commit))
  return { instances, serving }
}
