/**
 * state.json: the truth about the last run, written after every phase so that a run killed
 * midway leaves "running" with the phases it finished; `status` reads it (with the lock) to tell
 * an interrupted run from a live one. It holds names, commits and timings, never a secret value.
 */
import { mkdir, readFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { writeFileAtomic } from '../core/atomic-write.js'
import { errnoCode } from '../core/errors.js'

export type PhaseStatus = 'ok' | 'skipped' | 'failed' | 'not-run'
/** `prepared`: a warm-pool run succeeded, everything is in place and nothing was started */
export type RunOutcome = 'running' | 'success' | 'prepared' | 'failed' | 'rolled-back'

export interface PhaseRecord {
  name: string
  status: PhaseStatus
  durationMs: number
  detail?: string
}

export interface RunState {
  version: 1
  runId: string
  command: string
  reason: string
  mode: string
  pid: number
  startedAt: string
  finishedAt?: string
  durationMs?: number
  outcome: RunOutcome
  exitCode?: number
  service?: string
  environment?: string
  branch?: string
  repository?: string
  commit?: string
  release?: string
  previousRelease?: string
  lifecycle?: string
  /** the Warmed:* target lifecycle state of a warm-pool run (prepares, starts nothing) */
  warmPool?: string
  /** where the release came from: the live one kept, built from source, or the release cache */
  releaseFrom?: 'live' | 'source' | 'cache'
  /** what the release cache did (when one is configured) */
  cache?: { location: string; lookup?: string; commitFromPointer?: string; published?: string }
  url?: string
  /** where this run's report went (the watch's drain reports there too when it has no group of
   * its own: the group may come from the agent configuration parameter, which the watch never reads) */
  reportLogGroup?: string
  phases: PhaseRecord[]
  error?: { code: string; message: string; remedy: string; phase?: string }
}

/** A status document (state.json, watch.json): replaced atomically, readable by operators (it
 * holds no secret value: callers scrub it first). */
export const writeStatusFile = async (file: string, value: unknown): Promise<void> => {
  await mkdir(dirname(file), { recursive: true, mode: 0o755 })
  await writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o644 })
}

/** A status document, or undefined when there is none yet. */
export const readStatusFile = async <T>(file: string): Promise<T | undefined> => {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return undefined
    throw e
  }
}

export const writeState = (file: string, state: RunState): Promise<void> => writeStatusFile(file, state)

export const readState = (file: string): Promise<RunState | undefined> => readStatusFile<RunState>(file)
