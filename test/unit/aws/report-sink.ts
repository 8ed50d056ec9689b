import { Writable } from 'node:stream'
import pino from 'pino'
import t from 'tap'
import type { LogsWriterApi } from '../../../agent/src/aws/cloudwatch-logs.js'
import { createCloudWatchReportSink } from '../../../agent/src/aws/report-sink.js'
import { isAgentError } from '../../../agent/src/core/errors.js'

const sdkError = (name: string, status = 400, message = `${name} happened`) =>
  Object.assign(new Error(message), { name, $fault: status >= 500 ? 'server' : 'client', $metadata: { httpStatusCode: status } })
const silent = () => pino({ level: 'silent' }, new Writable({ write: (_c, _e, done) => done() }))

/** a fake CloudWatch Logs: streams of one group, and the errors the next calls get */
const fakeLogs = (o: { group?: string; streams?: string[]; putErrors?: Error[]; createErrors?: Error[]; rejected?: Record<string, number> } = {}) => {
  const streams = new Map((o.streams ?? []).map(s => [s, [] as string[]]))
  const calls: string[] = []
  const api: LogsWriterApi = {
    async putLogEvents(input) {
      calls.push(`PutLogEvents ${input.logStreamName}`)
      const e = o.putErrors?.shift()
      if (e) throw e
      if (input.logGroupName !== (o.group ?? '/reports')) throw sdkError('ResourceNotFoundException', 400, 'The specified log group does not exist.')
      const s = streams.get(input.logStreamName ?? '')
      if (!s) throw sdkError('ResourceNotFoundException', 400, 'The specified log stream does not exist.')
      s.push(...(input.logEvents ?? []).map(ev => ev.message ?? ''))
      return { $metadata: {}, ...(o.rejected ? { rejectedLogEventsInfo: o.rejected } : {}) }
    },
    async createLogStream(input) {
      calls.push(`CreateLogStream ${input.logStreamName}`)
      const e = o.createErrors?.shift()
      if (e) throw e
      if (input.logGroupName !== (o.group ?? '/reports')) throw sdkError('ResourceNotFoundException', 400, 'The specified log group does not exist.')
      if (!streams.has(input.logStreamName ?? '')) streams.set(input.logStreamName ?? '', [])
      return {}
    },
  }
  return { api, calls, streams }
}

const event = { timestamp: 1, message: '{"report":1}' }
const signal = new AbortController().signal
const sink = (api: LogsWriterApi, group = '/reports') =>
  createCloudWatchReportSink({ group, region: 'eu-west-1', log: silent(), api, retry: { baseMs: 1, capMs: 2 } })

t.test('an existing stream: one PutLogEvents', async t => {
  const f = fakeLogs({ streams: ['i-0abc'] })
  await sink(f.api).put('i-0abc', event, signal)
  t.same(f.calls, ['PutLogEvents i-0abc'])
  t.same(f.streams.get('i-0abc'), ['{"report":1}'])
  t.equal(sink(f.api).description, 'CloudWatch Logs group /reports')
})

t.test("an instance's first report creates its stream", async t => {
  const f = fakeLogs()
  await sink(f.api).put('i-0abc', event, signal)
  t.same(f.calls, ['PutLogEvents i-0abc', 'CreateLogStream i-0abc', 'PutLogEvents i-0abc'])
  t.same(f.streams.get('i-0abc'), ['{"report":1}'])
  const raced = fakeLogs({ createErrors: [sdkError('ResourceAlreadyExistsException', 400, 'The specified log stream already exists')] })
  raced.streams.set('i-0abc', [])
  raced.api.putLogEvents = (() => {
    const put = raced.api.putLogEvents.bind(raced.api)
    let first = true
    return async (input: Parameters<LogsWriterApi['putLogEvents']>[0], s: AbortSignal) => {
      if (first) {
        first = false
        throw sdkError('ResourceNotFoundException', 400, 'The specified log stream does not exist.')
      }
      return put(input, s)
    }
  })()
  await sink(raced.api).put('i-0abc', event, signal)
  t.same(raced.streams.get('i-0abc'), ['{"report":1}'], 'a stream created meanwhile (a drain beside a run) is fine')
})

t.test('no such group: a clear error naming it and how to create it', async t => {
  const f = fakeLogs({ group: '/other' })
  const e = await sink(f.api).put('i-0abc', event, signal).then(() => undefined, (x: unknown) => x)
  if (!isAgentError(e)) return t.fail('expected an AgentError')
  t.equal(e.code, 'REPORT_GROUP_MISSING')
  t.match(e.message, 'the report log group /reports does not exist in eu-west-1')
  t.match(e.remedy, 'aws logs create-log-group --log-group-name /reports')
  t.same(f.calls, ['PutLogEvents i-0abc'], 'no stream is created in a missing group')
})

t.test('the retry policy: throttling retried, access denied at once with the IAM action', async t => {
  const f = fakeLogs({ streams: ['i-0abc'], putErrors: [sdkError('ThrottlingException', 400, 'Rate exceeded'), sdkError('ServiceUnavailableException', 503)] })
  await sink(f.api).put('i-0abc', event, signal)
  t.equal(f.calls.length, 3, 'two transient errors, then sent')
  const denied = fakeLogs({ streams: ['i-0abc'], putErrors: [sdkError('AccessDeniedException', 400, 'User is not authorized to perform: logs:PutLogEvents')] })
  const e = await sink(denied.api).put('i-0abc', event, signal).then(() => undefined, (x: unknown) => x)
  t.match(e, { code: 'AWS_ACCESS_DENIED', message: /logs:PutLogEvents on \/reports:i-0abc failed: AccessDeniedException/, remedy: /add logs:PutLogEvents on \/reports:i-0abc/ })
  t.equal(denied.calls.length, 1, 'not retried')
})

t.test('an event CloudWatch refuses (clock skew) is an error, not a silent loss', async t => {
  const f = fakeLogs({ streams: ['i-0abc'], rejected: { tooOldLogEventEndIndex: 0 } })
  const e = await sink(f.api).put('i-0abc', event, signal).then(() => undefined, (x: unknown) => x)
  t.match(e, { code: 'REPORT_REJECTED', message: /tooOldLogEventEndIndex/, remedy: /clock/ })
})
