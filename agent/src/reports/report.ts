/**
 * The run report: one CloudWatch Logs event per run (boot, SSM, manual, warm-pool) and per drain
 * of `watch`, in the instance's stream of the report log group, so the record of a failed boot
 * outlives the instance that Auto Scaling terminates after its ABANDON. A run's report is what
 * state.json holds plus the agent version, the instance, what serves after the run, and on
 * failure the evidence (core/evidence.ts); a drain's is what watch.json records of it.
 *
 * The shape is versioned (`schema` + `version`, README "Run reports"): a reader skips events of
 * other schemas or newer versions instead of guessing. Every string is scrubbed of the run's
 * secret values before it leaves (the callers pass their scrubber).
 */
import type { Evidence } from '../core/evidence.js'
import { parseReleaseId } from '../releases/releases.js'
import type { RunState } from '../run/state.js'
import type { Scrubber } from '../secrets/redact.js'
import type { DrainRecord, WatchState } from '../watch/state.js'

export const REPORT_SCHEMA = 'bootstrap-agent/report'
export const REPORT_VERSION = 1

/** How a report too big for one CloudWatch Logs event was cut (reports/fit.ts). */
export interface Truncation {
  /** the report's size before the cut, bytes of UTF-8 JSON */
  originalBytes: number
  limitBytes: number
  /** what was cut, in order, e.g. "evidence[0] (npm ci stderr): 40960 bytes from its start" */
  cut: string[]
}

interface ReportBase {
  schema: typeof REPORT_SCHEMA
  version: typeof REPORT_VERSION
  agentVersion: string
  /** the stream's name too */
  instanceId: string
  service?: string
  environment?: string
  /** when the report was made (ISO 8601); the event's timestamp */
  at: string
  /** sent before the lifecycle action is completed: what the agent sends right after it
   * ("ABANDON" after a failed run, "CONTINUE" after a drain) */
  hookAfter?: string
  /** the failing step's output or the service's log tail; empty on success */
  evidence: Evidence[]
  truncated?: Truncation
}

export interface RunReport extends ReportBase {
  kind: 'run'
  run: RunState
  /** what serves when the run ended; undefined: nothing (a first release that failed, a warm-pool
   * prepare). `commit` is whole when this run deployed it, else the release id's 12 digits */
  serving?: { release: string; commit: string }
}

export interface DrainReport extends ReportBase {
  kind: 'drain'
  drain: DrainRecord
  targetState?: string | null
  spotNotice?: WatchState['spotNotice']
}

export type Report = RunReport | DrainReport

/** What a run knows at its end about the releases, to tell what serves (see RunReport.serving). */
export interface ServingInput {
  failed: boolean
  warmPool: boolean
  release?: { id: string; commit: string }
  /** what `current` pointed to when the run started */
  liveRelease?: string
  switched: boolean
  rolledBack: boolean
}

export const servingAfter = (i: ServingInput): RunReport['serving'] => {
  if (i.warmPool) return undefined
  // a failure after the switch is rolled back to the live release, or leaves nothing started
  const id = !i.failed ? i.release?.id : i.switched && !i.rolledBack ? undefined : i.liveRelease
  if (id === undefined) return undefined
  const commit = id === i.release?.id ? i.release.commit : parseReleaseId(id)?.shortSha
  return commit === undefined ? undefined : { release: id, commit }
}

interface Common {
  agentVersion: string
  instanceId: string
  at: Date
  hookAfter?: string
  scrubber: Pick<Scrubber, 'scrubDeep'>
}

const opt = <K extends string, V>(key: K, value: V | undefined): Partial<Record<K, V>> =>
  (value === undefined ? {} : { [key]: value }) as Partial<Record<K, V>>

/**
 * A run's report. Sent before the ABANDON, the record's `complete` phase has not run yet: it
 * says what follows instead of "not-run".
 */
export const runReport = (c: Common & { state: RunState; evidence: readonly Evidence[]; serving: RunReport['serving'] | undefined }): RunReport => {
  const phases = c.state.phases.map(p =>
    p.name === 'complete' && p.status === 'not-run' && c.hookAfter ? { ...p, detail: `${c.hookAfter} is sent after this report` } : p)
  return c.scrubber.scrubDeep({
    schema: REPORT_SCHEMA,
    version: REPORT_VERSION,
    kind: 'run',
    agentVersion: c.agentVersion,
    instanceId: c.instanceId,
    ...opt('service', c.state.service),
    ...opt('environment', c.state.environment),
    at: c.at.toISOString(),
    ...opt('hookAfter', c.hookAfter),
    run: { ...c.state, phases },
    ...opt('serving', c.serving),
    evidence: [...c.evidence],
  })
}

export const drainReport = (c: Common & { drain: DrainRecord; watch: Pick<WatchState, 'targetState' | 'spotNotice'>; service?: string; environment?: string }): DrainReport =>
  c.scrubber.scrubDeep({
    schema: REPORT_SCHEMA,
    version: REPORT_VERSION,
    kind: 'drain',
    agentVersion: c.agentVersion,
    instanceId: c.instanceId,
    ...opt('service', c.service),
    ...opt('environment', c.environment),
    at: c.at.toISOString(),
    ...opt('hookAfter', c.hookAfter),
    drain: c.drain,
    ...opt('targetState', c.watch.targetState),
    ...opt('spotNotice', c.watch.spotNotice),
    evidence: [],
  })

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/**
 * A report read back from the group, or undefined for any other event: the group may hold
 * events of a newer agent, of something else, or forged by a compromised instance (it holds the
 * instance profile). Checks what readers rely on; every other field is read defensively.
 */
export const parseReport = (message: string): Report | undefined => {
  let data: unknown
  try {
    data = JSON.parse(message)
  } catch {
    return undefined
  }
  if (!isRecord(data) || data['schema'] !== REPORT_SCHEMA || data['version'] !== REPORT_VERSION) return undefined
  if (typeof data['instanceId'] !== 'string' || typeof data['at'] !== 'string' || !Array.isArray(data['evidence'])) return undefined
  const record = data['kind'] === 'run' ? data['run'] : data['kind'] === 'drain' ? data['drain'] : undefined
  if (!isRecord(record) || !Array.isArray(record[data['kind'] === 'run' ? 'phases' : 'steps'])) return undefined
  return data as unknown as Report
}
