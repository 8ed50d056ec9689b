/**
 * The ReportSink on AWS: one PutLogEvents into the instance's stream of the report log group.
 * The group is the operator's (created with its retention, README "Run reports"); the stream is
 * created on the first report of an instance (CreateLogStream, then PutLogEvents again), so the
 * usual report costs one call. Both go through the agent's retry policy within the report's
 * deadline, and are abandoned when it passes (reports/sink.ts).
 */
import { AgentError } from '../core/errors.js'
import type { Logger } from '../core/logger.js'
import type { ReportSink } from '../reports/sink.js'
import { REPORT_DEADLINE_MS } from '../reports/sink.js'
import { createLogsWriterApi, type LogsWriterApi } from './cloudwatch-logs.js'
import { classifyAwsError, withRetry, type AwsCall, type RetryOptions } from './retry.js'

export interface CloudWatchReportSinkOptions {
  group: string
  region: string
  log: Logger
  api?: LogsWriterApi
  /** the budget of every call (default the report's deadline) and their backoff (tests shorten it) */
  retry?: Pick<RetryOptions, 'baseMs' | 'capMs' | 'totalMs'>
}

const missing = (e: unknown, what: 'stream' | 'group') => {
  const info = classifyAwsError(e)
  return info.code === 'ResourceNotFoundException' && new RegExp(`log ${what}`, 'i').test(info.message)
}

export const createCloudWatchReportSink = (o: CloudWatchReportSinkOptions): ReportSink => {
  const totalMs = o.retry?.totalMs ?? REPORT_DEADLINE_MS
  let api = o.api
  const logs = () => (api ??= createLogsWriterApi(o.region, totalMs))
  const call = <T>(what: AwsCall, fn: () => Promise<T>) =>
    withRetry(what, fn, {
      ...o.retry,
      totalMs,
      onRetry: i => o.log.warn({ aws: `${what.service}:${what.action}`, resource: what.resource, ...i }, `AWS ${what.action} failed (${i.code}); retrying`),
    })
  const noGroup = () =>
    new AgentError(`the report log group ${o.group} does not exist in ${o.region}`, {
      code: 'REPORT_GROUP_MISSING',
      remedy: `create it (aws logs create-log-group --log-group-name ${o.group}, then put-retention-policy; README "Run reports"), or fix BOOTSTRAP_REPORT_LOG_GROUP`,
    })

  return {
    description: `CloudWatch Logs group ${o.group}`,
    async put(stream, event, signal) {
      const resource = `${o.group}:${stream}`
      const put = () => call({ service: 'logs', action: 'PutLogEvents', resource }, async () => {
        try {
          const r = await logs().putLogEvents({ logGroupName: o.group, logStreamName: stream, logEvents: [event] }, signal)
          const rejected = r.rejectedLogEventsInfo
          if (rejected && Object.values(rejected).some(v => v !== undefined)) {
            throw new AgentError(`CloudWatch Logs rejected the report event (${JSON.stringify(rejected)}): its timestamp is outside what the group accepts`, {
              code: 'REPORT_REJECTED',
              remedy: "check the instance's clock (events more than 14 days old or 2 hours ahead are refused) and the group's retention",
            })
          }
          return 'put' as const
        } catch (e) {
          if (missing(e, 'stream')) return 'no-stream' as const
          if (missing(e, 'group')) throw noGroup()
          throw e
        }
      })
      if ((await put()) === 'put') return
      await call({ service: 'logs', action: 'CreateLogStream', resource }, async () => {
        try {
          await logs().createLogStream({ logGroupName: o.group, logStreamName: stream }, signal)
        } catch (e) {
          // another report of this instance (a watch's drain beside a run) created it meanwhile
          if (classifyAwsError(e).code === 'ResourceAlreadyExistsException') return
          if (missing(e, 'group')) throw noGroup()
          throw e
        }
      })
      if ((await put()) === 'no-stream') throw new AgentError(`the log stream ${resource} was created and is gone again`, { code: 'REPORT_STREAM_MISSING', remedy: 'check who deletes streams in the report log group' })
    },
  }
}
