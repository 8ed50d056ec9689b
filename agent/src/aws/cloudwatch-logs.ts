/**
 * The CloudWatch Logs surface of the run reports: what an instance writes (PutLogEvents,
 * CreateLogStream) and what `history` and `fleet` read (FilterLogEvents, GetLogEvents). Narrow
 * interfaces of just those calls, so the sink and the operator commands are tested against fakes;
 * the client module is loaded on first use, so a run without reports never loads it. Retries live
 * in the callers (withRetry), not in the SDK (`sdkClientConfig`: maxAttempts 1).
 */
import type {
  CreateLogStreamCommandInput, FilterLogEventsCommandInput, FilterLogEventsCommandOutput, GetLogEventsCommandInput,
  GetLogEventsCommandOutput, PutLogEventsCommandInput, PutLogEventsCommandOutput,
} from '@aws-sdk/client-cloudwatch-logs'
import { lazy } from './lazy.js'
import { sdkClientConfig } from './retry.js'

/** The calls an instance makes; `signal` abandons the request (the report's deadline). */
export interface LogsWriterApi {
  putLogEvents(input: PutLogEventsCommandInput, signal: AbortSignal): Promise<PutLogEventsCommandOutput>
  createLogStream(input: CreateLogStreamCommandInput, signal: AbortSignal): Promise<unknown>
}

/** The calls of the operator commands. */
export interface LogsReaderApi {
  filterLogEvents(input: FilterLogEventsCommandInput): Promise<FilterLogEventsCommandOutput>
  getLogEvents(input: GetLogEventsCommandInput): Promise<GetLogEventsCommandOutput>
}

const client = (region: string, budgetMs?: number) => lazy(async () => {
  const sdk = await import('@aws-sdk/client-cloudwatch-logs')
  return { sdk, logs: new sdk.CloudWatchLogsClient(sdkClientConfig(region, budgetMs)) }
})

/** `budgetMs` cuts one attempt's connect and answer timeouts to the report's deadline. */
export const createLogsWriterApi = (region: string, budgetMs: number): LogsWriterApi => {
  const c = client(region, budgetMs)
  return {
    async putLogEvents(input, signal) {
      const { sdk, logs } = await c()
      return logs.send(new sdk.PutLogEventsCommand(input), { abortSignal: signal })
    },
    async createLogStream(input, signal) {
      const { sdk, logs } = await c()
      return logs.send(new sdk.CreateLogStreamCommand(input), { abortSignal: signal })
    },
  }
}

export const createLogsReaderApi = (region: string): LogsReaderApi => {
  const c = client(region)
  return {
    async filterLogEvents(input) {
      const { sdk, logs } = await c()
      return logs.send(new sdk.FilterLogEventsCommand(input))
    },
    async getLogEvents(input) {
      const { sdk, logs } = await c()
      return logs.send(new sdk.GetLogEventsCommand(input))
    },
  }
}
