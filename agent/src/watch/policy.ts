/**
 * Pure: what `watch` does about one IMDS poll. No I/O; watch/loop.ts applies the decisions.
 *
 * - `Terminated` (or `Warmed:Terminated`, a warm-pool instance being removed) is a termination:
 *   drain once, then answer the terminating hook. Other `Warmed:*` states are not: warm-pool
 *   instances sit in Warmed:Stopped / Warmed:Running / Warmed:Hibernated.
 * - A spot instance-action notice (terminate, stop or hibernate, two minutes ahead): the same
 *   drain. The terminating hook is answered when the target state says Terminated (Auto Scaling
 *   moves the instance to Terminating:Wait only after the notice), without draining twice.
 * - `Warmed:*` -> `InService` seen while watching (a Warmed:Running pool, where no boot happens):
 *   a normal run (`--reason warm-pool`) finishes what the warm prepare left. An instance that is
 *   already InService when the watch starts triggers nothing: bootstrap-agent.service runs at boot.
 */
import type { DrainReason } from './state.js'

export interface SpotAction {
  action: string
  time: string
}

export interface Observation {
  /** autoscaling/target-lifecycle-state; undefined: 404 (not in an Auto Scaling group) */
  targetState: string | undefined
  /** spot/instance-action; undefined: 404 (no interruption scheduled) */
  spot: SpotAction | undefined
}

export interface Memory {
  /** the target state of the previous successful poll; `first` before any */
  previousTarget: string | undefined | 'first'
  drained: boolean
  /** the terminating hook was answered (or there is none to answer) */
  hookAnswered: boolean
  runInProgress: boolean
}

export type Decision =
  | { kind: 'drain'; reason: DrainReason; trigger: string }
  | { kind: 'complete-hook'; trigger: string }
  | { kind: 'warm-pool-run'; trigger: string }

export const isTermination = (target: string | undefined): boolean => target === 'Terminated' || target === 'Warmed:Terminated'

export const decide = (m: Memory, o: Observation): Decision[] => {
  const terminating = isTermination(o.targetState)
  if (!m.drained) {
    if (terminating) return [{ kind: 'drain', reason: 'terminated', trigger: `target lifecycle state ${o.targetState}` }]
    if (o.spot) return [{ kind: 'drain', reason: 'spot-interruption', trigger: `spot instance-action ${o.spot.action} at ${o.spot.time}` }]
  } else if (terminating && !m.hookAnswered) {
    return [{ kind: 'complete-hook', trigger: `target lifecycle state ${o.targetState} (drained already)` }]
  }
  const left = m.previousTarget !== 'first' && m.previousTarget?.startsWith('Warmed:') === true && !isTermination(m.previousTarget)
  if (left && o.targetState === 'InService' && !m.drained && !m.runInProgress) {
    return [{ kind: 'warm-pool-run', trigger: `target lifecycle state ${m.previousTarget} -> InService` }]
  }
  return []
}

/** Parses spot/instance-action ({"action": "terminate", "time": "2026-01-01T00:02:00Z"}). A body
 * that is not that JSON is still a notice (IMDS only serves the path when one is scheduled). */
export const parseSpotAction = (body: string): SpotAction => {
  try {
    const o: unknown = JSON.parse(body)
    if (typeof o === 'object' && o !== null && 'action' in o && 'time' in o && typeof o.action === 'string' && typeof o.time === 'string') {
      return { action: o.action, time: o.time }
    }
  } catch {
    // fall through: an unexpected body, kept short for the record
  }
  return { action: 'unknown', time: body.slice(0, 64) }
}

const BACKOFF_CAP_MS = 30_000

/** The next poll: the interval, doubled per consecutive failure up to 30 s (never below the
 * interval), so a dead IMDS is not hammered and a recovered one is seen within 30 s. */
export const pollDelay = (intervalMs: number, consecutiveFailures: number): number =>
  consecutiveFailures === 0 ? intervalMs : Math.max(intervalMs, Math.min(BACKOFF_CAP_MS, intervalMs * 2 ** consecutiveFailures))
