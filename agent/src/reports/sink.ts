/**
 * The ReportSink seam (the AWS one: aws/report-sink.ts, CloudWatch Logs), and the one policy for
 * sending a report (design.md invariant 11): on its own short deadline, after which the attempt
 * is abandoned (its requests aborted), and never an error. A report that cannot be sent is a
 * warning in the agent's log; the run's outcome, exit code and lifecycle hook result do not
 * depend on it, and the hook is never held longer than the deadline.
 */
import { messageOf } from '../core/errors.js'
import type { Logger } from '../core/logger.js'
import { fitReport } from './fit.js'
import type { Report } from './report.js'

export interface ReportSink {
  /** e.g. "CloudWatch Logs group /bootstrap-agent/stage/api" */
  readonly description: string
  /** writes one event to `stream`; rejects when it could not; gives up once `signal` aborts */
  put(stream: string, event: { timestamp: number; message: string }, signal: AbortSignal): Promise<void>
}

/**
 * The deadline of one report, retries included. Short, because a failing boot's report is sent
 * before its ABANDON: an instance that failed waits this much longer at most before Auto Scaling
 * replaces it. A few round trips to CloudWatch Logs (PutLogEvents, and CreateLogStream plus a
 * second PutLogEvents the first time an instance reports) take well under a second.
 */
export const REPORT_DEADLINE_MS = 5_000

export type Delivery =
  | { status: 'sent'; bytes: number; truncated: boolean }
  | { status: 'failed'; error: string }
  | { status: 'timed-out' }

export interface DeliverInput {
  sink: ReportSink
  report: Report
  log: Logger
  deadlineMs?: number
}

export const deliverReport = async (i: DeliverInput): Promise<Delivery> => {
  const deadlineMs = i.deadlineMs ?? REPORT_DEADLINE_MS
  const where = { reportSink: i.sink.description, stream: i.report.instanceId, kind: i.report.kind }
  const abort = new AbortController()
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<Delivery>(resolve => {
    timer = setTimeout(() => resolve({ status: 'timed-out' }), deadlineMs)
  })
  const send = (async (): Promise<Delivery> => {
    const { message, truncated } = fitReport(i.report)
    if (truncated) i.log.warn({ ...where, truncated }, `run report cut to fit one CloudWatch Logs event (${truncated.originalBytes} bytes)`)
    await i.sink.put(i.report.instanceId, { timestamp: Date.parse(i.report.at), message }, abort.signal)
    return { status: 'sent', bytes: Buffer.byteLength(message), truncated: truncated !== undefined }
  })().catch((e: unknown): Delivery => ({ status: 'failed', error: messageOf(e) }))
  const d = await Promise.race([send, deadline])
  clearTimeout(timer)
  // whatever is still in flight is given up: the agent moves on, and no request outlives the run
  abort.abort()
  if (d.status === 'sent') i.log.info({ ...where, bytes: d.bytes }, `run report sent to ${i.sink.description}`)
  else if (d.status === 'failed') i.log.warn({ ...where, error: d.error }, `run report not sent: ${d.error}; the run's outcome is unchanged`)
  else i.log.warn({ ...where, deadlineMs }, `run report not sent: no answer within its ${deadlineMs / 1000} s deadline; the run's outcome is unchanged`)
  return d
}
