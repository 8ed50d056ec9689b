/**
 * `history`: the runs of a service and environment, read back from the report log group, so they
 * are there after the instances are gone. FilterLogEvents over the whole group (every stream, one
 * per instance) from `--since` on, every page: a page holds at most 1 MB or 10,000 events and may
 * be empty while more follow, so only a missing nextToken ends it. Newest first; one run's whole
 * report (with its evidence) with `--instance`.
 *
 * The group holds what instances wrote, and an instance holds the instance profile: a report is
 * parsed defensively (reports/report.ts, parseReport), and every text printed to a terminal has
 * its control characters replaced, so a forged report cannot drive the operator's terminal.
 */
import type { LogsReaderApi } from '../aws/cloudwatch-logs.js'
import { classifyAwsError, withRetry, type RetryOptions } from '../aws/retry.js'
import { AgentError } from '../core/errors.js'
import { parseReport, type Report } from '../reports/report.js'
import { forOperator } from './instances.js'

export interface ReportQuery {
  group: string
  region: string
  /** ms since the epoch: reports from then on */
  startTime: number
  /** only these streams (instance ids); all when undefined */
  instanceIds?: readonly string[]
}

export interface ReadResult {
  reports: Report[]
  /** FilterLogEvents calls made */
  pages: number
  /** events that were no report of this version (another agent version, anything else) */
  skipped: number
}

/** CloudWatch Logs takes at most 100 stream names per FilterLogEvents */
const STREAMS_PER_CALL = 100

export const groupMissing = (q: { group: string; region: string }, e: unknown): unknown => {
  const info = classifyAwsError(e instanceof AgentError && e.cause !== undefined ? e.cause : e)
  if (info.code !== 'ResourceNotFoundException') return e
  return new AgentError(`the report log group ${q.group} does not exist in ${q.region}`, {
    code: 'REPORT_GROUP_MISSING',
    remedy: 'check --report-log-group (default /bootstrap-agent/{environment}/{service}) and AWS_REGION against the BOOTSTRAP_REPORT_LOG_GROUP the instances use',
    exitCode: 2,
  })
}

/** Every report in the group (or of some instances) since `startTime`, following every page. */
export const readReports = async (api: LogsReaderApi, q: ReportQuery, retry?: RetryOptions): Promise<ReadResult> => {
  const out: ReadResult = { reports: [], pages: 0, skipped: 0 }
  const batches = q.instanceIds === undefined ? [undefined] : chunks(q.instanceIds, STREAMS_PER_CALL)
  for (const logStreamNames of batches) {
    let nextToken: string | undefined
    const seen = new Set<string>()
    do {
      const page = await withRetry({ service: 'logs', action: 'FilterLogEvents', resource: q.group }, () => api.filterLogEvents({
        logGroupName: q.group,
        startTime: q.startTime,
        ...(logStreamNames ? { logStreamNames: [...logStreamNames] } : {}),
        ...(nextToken ? { nextToken } : {}),
      }), retry).catch((e: unknown) => {
        throw forOperator(groupMissing(q, e))
      })
      out.pages += 1
      for (const ev of page.events ?? []) {
        const r = parseReport(ev.message ?? '')
        // the stream is the instance: a report claiming another instance is not believed
        if (r && r.instanceId === ev.logStreamName) out.reports.push(r)
        else out.skipped += 1
      }
      // a token seen before would loop forever; CloudWatch does not send one, an emulator might
      nextToken = page.nextToken && !seen.has(page.nextToken) ? page.nextToken : undefined
      if (nextToken) seen.add(nextToken)
    } while (nextToken)
  }
  return out
}

const chunks = <T>(all: readonly T[], n: number): T[][] => {
  const out: T[][] = []
  for (let i = 0; i < all.length; i += n) out.push(all.slice(i, i + n))
  return out
}

export interface HistoryRow {
  /** when the run (or drain) started */
  time: string
  instanceId: string
  kind: Report['kind']
  /** the run's id (drains have none) */
  runId?: string
  reason: string
  commit?: string
  outcome: string
  failedPhase?: string
  errorCode?: string
}

const opt = <K extends string, V>(key: K, value: V | undefined): Partial<Record<K, V>> =>
  (value === undefined ? {} : { [key]: value }) as Partial<Record<K, V>>

export const rowOf = (r: Report): HistoryRow => {
  if (r.kind === 'run') {
    return {
      time: r.run.startedAt, instanceId: r.instanceId, kind: 'run', runId: r.run.runId, reason: r.run.reason, outcome: r.run.outcome,
      ...opt('commit', r.run.commit), ...opt('failedPhase', r.run.error?.phase), ...opt('errorCode', r.run.error?.code),
    }
  }
  const failed = r.drain.steps.find(s => s.status === 'failed')
  return {
    time: r.drain.startedAt, instanceId: r.instanceId, kind: 'drain', reason: `drain (${r.drain.reason})`, outcome: r.drain.outcome,
    ...opt('failedPhase', failed?.name), ...opt('errorCode', /^\[([A-Z0-9_]+)\]/.exec(failed?.detail ?? '')?.[1]),
  }
}

/**
 * The reports of this service and environment, newest first. A report names both (a group may be
 * shared); one that names neither (its run failed before its settings were known) belongs to the
 * group it was sent to.
 */
export const historyOf = (reports: readonly Report[], service: string, environment: string): Report[] =>
  reports
    .filter(r => (r.service === undefined || r.service === service) && (r.environment === undefined || r.environment === environment))
    .sort((a, b) => rowOf(b).time.localeCompare(rowOf(a).time) || b.at.localeCompare(a.at))

/** One report of one instance: the run with this id (or its prefix), else the newest. */
export const pickReport = (reports: readonly Report[], runId: string | undefined): Report | undefined =>
  runId === undefined ? reports[0] : reports.find(r => r.kind === 'run' && r.run.runId.startsWith(runId))

/** since: `30m`, `24h`, `7d` before now, or an ISO 8601 time; undefined when it is neither */
export const parseSince = (text: string, now: number): number | undefined => {
  const m = /^(\d{1,6})([mhd])$/.exec(text)
  if (m) return now - Number(m[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'm' | 'h' | 'd']
  if (!/^\d{4}-\d{2}-\d{2}/.test(text)) return undefined
  const t = Date.parse(text)
  return Number.isNaN(t) ? undefined : t
}
