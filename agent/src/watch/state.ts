/**
 * watch.json, beside state.json: what `bootstrap-agent watch` sees and did (watching since, last
 * poll, target lifecycle state, spot notice, the drain and the terminating hook), rewritten
 * atomically after every change so `status` reads the truth even while a drain runs. Its own
 * file rather than a field of state.json: the watch writes it every few seconds while runs
 * rewrite state.json under the run lock, and neither may lose the other's update.
 *
 * `bootId` ties the record to one boot: a drain happens once per instance lifetime, and a
 * spot-stopped instance that is started again is a new lifetime (the old record is replaced).
 */
import { join } from 'node:path'
import type { HookOutcome } from '../seams/lifecycle-hook.js'
import { readStatusFile, writeStatusFile } from '../run/state.js'

export type DrainReason = 'terminated' | 'spot-interruption'
export type DrainStepStatus = 'ok' | 'skipped' | 'failed'

export interface DrainStep {
  name: string
  status: DrainStepStatus
  durationMs: number
  detail?: string
}

export interface HookRecord {
  outcome: HookOutcome | 'failed'
  detail: string
  at: string
  /** done with: completed, no action to complete, or no terminating hook while Terminated;
   * false: tried again at the next poll (a failure, or a spot notice before Terminating:Wait) */
  answered: boolean
}

export interface DrainRecord {
  reason: DrainReason
  /** what was seen, e.g. "target lifecycle state Terminated" */
  trigger: string
  startedAt: string
  finishedAt?: string
  durationMs?: number
  /** running, then ok (every step ok or skipped) or failed (a step failed; the hook still went) */
  outcome: 'running' | 'ok' | 'failed'
  steps: DrainStep[]
}

export interface SpotNotice {
  action: string
  time: string
  seenAt: string
}

export interface WatchState {
  version: 1
  pid: number
  bootId: string
  instanceId?: string
  startedAt: string
  lastPollAt?: string
  /** ok, or why the last poll failed */
  imds: { ok: boolean; error?: string; consecutiveFailures: number }
  /** IMDS autoscaling/target-lifecycle-state; null: not in an Auto Scaling group */
  targetState?: string | null
  spotNotice?: SpotNotice
  drain?: DrainRecord
  /** the terminating lifecycle hook, once it was answered */
  hook?: HookRecord
  /** runs the watch started (warm pool -> InService) */
  runs: { reason: string; startedAt: string; exitCode?: number }[]
}

export const watchStateFilePath = (root: string): string => join(root, 'var/lib/bootstrap-agent/watch.json')
/** one watch at a time (two would drain twice) */
export const watchLockFilePath = (root: string): string => join(root, 'var/lib/bootstrap-agent/watch.lock')

export const writeWatchState = (file: string, state: WatchState): Promise<void> => writeStatusFile(file, state)

export const readWatchState = (file: string): Promise<WatchState | undefined> => readStatusFile<WatchState>(file)
