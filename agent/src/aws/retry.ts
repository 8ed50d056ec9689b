/**
 * One retry policy for every AWS call the agent makes (design.md invariant 8). The SDK clients
 * run with `maxAttempts: 1` (see `sdkClientConfig`), so attempts are counted here and nowhere
 * else: transient errors (throttling, 5xx, network, timeouts) are retried with full-jitter
 * exponential backoff (longer after throttling) inside a bounded total time; anything else fails
 * at once as an AgentError that names the service, the action and the resource, and says what
 * to do.
 *
 * Messages carry AWS's own error message (it names ARNs, roles and policies, never values we did
 * not send) and we only ever send names, paths and ids: no secret value can reach them.
 */
import { AgentError, isAgentError } from '../core/errors.js'

export type AwsErrorKind =
  | 'throttled'
  | 'server'
  | 'unreachable'
  | 'access-denied'
  | 'auth'
  | 'no-credentials'
  | 'not-found'
  | 'unsupported'
  | 'invalid'
  | 'other'

export interface AwsErrorInfo {
  kind: AwsErrorKind
  /** AWS error code (e.g. ThrottlingException), Node code (ECONNRESET) or the error's name */
  code: string
  /** HTTP status when AWS answered */
  status: number | undefined
  retryable: boolean
  /** the first line of the error's message, cut to 300 characters */
  message: string
}

export interface AwsCall {
  /** IAM service prefix: secretsmanager, ssm, ec2, autoscaling */
  service: string
  /** API action as IAM names it: GetSecretValue, DescribeTags */
  action: string
  /** what the call is about (secret id, parameter path, ASG/hook); names only, never values */
  resource?: string
}

export interface RetryOptions {
  /** no wait ends past this many ms since the first attempt (60 s): the last one is cut to fit */
  totalMs?: number
  /** first backoff ceiling (200 ms); doubles per attempt up to capMs (throttling: see backoffCeiling) */
  baseMs?: number
  /** largest backoff ceiling (5 s) */
  capMs?: number
  onRetry?: (i: { attempt: number; code: string; delayMs: number }) => void
}

const THROTTLING = new Set([
  'ThrottlingException', 'Throttling', 'ThrottledException', 'TooManyRequestsException', 'RequestLimitExceeded',
  'ProvisionedThroughputExceededException', 'RequestThrottled', 'RequestThrottledException', 'SlowDown',
  'EC2ThrottledException', 'PriorRequestNotComplete', 'BandwidthLimitExceeded',
])
const SERVER = new Set([
  'InternalFailure', 'InternalError', 'InternalServerError', 'InternalServiceError', 'InternalServiceErrorException',
  'ServiceUnavailable', 'ServiceUnavailableException', 'RequestTimeout', 'RequestTimeoutException',
])
const NETWORK = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN',
  'EAI_AGAIN', 'ENOTFOUND', 'TimeoutError', 'RequestTimeoutError',
])
const ACCESS_DENIED = new Set(['UnauthorizedOperation', 'UnauthorizedAccess', 'AuthorizationError', 'Forbidden'])
const AUTH = new Set([
  'InvalidClientTokenId', 'UnrecognizedClientException', 'AuthFailure', 'SignatureDoesNotMatch', 'IncompleteSignature',
  'MissingAuthenticationToken', 'MissingAuthenticationTokenException', 'ExpiredToken', 'ExpiredTokenException',
  'InvalidSignatureException', 'RequestExpired',
])
const UNSUPPORTED = new Set(['UnknownOperationException', 'UnknownOperation', 'InvalidAction', 'NotImplemented', 'UnsupportedOperation'])
const INVALID = new Set([
  'ValidationError', 'ValidationException', 'InvalidRequestException', 'InvalidRequest', 'MissingParameter',
  'InvalidNextTokenException', 'InvalidNextToken', 'InvalidFilterKey', 'InvalidFilterValue', 'InvalidFilterOption',
  'SerializationException', 'MalformedQueryString',
])

const field = (e: object, key: string): unknown => (key in e ? (e as Record<string, unknown>)[key] : undefined)

const stringField = (e: object, key: string): string | undefined => {
  const v = field(e, key)
  return typeof v === 'string' && v !== '' ? v : undefined
}

const httpStatus = (e: object): number | undefined => {
  const meta = field(e, '$metadata')
  const s = typeof meta === 'object' && meta !== null ? field(meta, 'httpStatusCode') : field(e, 'statusCode')
  return typeof s === 'number' ? s : undefined
}

const firstLine = (text: string): string => {
  const line = text.split('\n')[0] ?? ''
  return line.length > 300 ? `${line.slice(0, 300)}…` : line
}

const kindOf = (code: string, status: number | undefined, e: object): AwsErrorKind => {
  if (THROTTLING.has(code) || status === 429) return 'throttled'
  const retryable = field(e, '$retryable')
  if (typeof retryable === 'object' && retryable !== null && field(retryable, 'throttling') === true) return 'throttled'
  if (NETWORK.has(code) || /socket hang up/i.test(stringField(e, 'message') ?? '')) return 'unreachable'
  if (code === 'CredentialsProviderError' || code === 'InstanceMetadataV1FallbackError') return 'no-credentials'
  if (ACCESS_DENIED.has(code) || code.startsWith('AccessDenied')) return 'access-denied'
  if (AUTH.has(code)) return 'auth'
  if (UNSUPPORTED.has(code)) return 'unsupported'
  if (code === 'ResourceNotFoundException' || code === 'ParameterNotFound' || /NotFound(Exception)?$|\.NotFound$/.test(code)) return 'not-found'
  if (INVALID.has(code) || code.startsWith('InvalidParameter')) return 'invalid'
  if (SERVER.has(code) || (status !== undefined && status >= 500) || field(e, '$fault') === 'server') return 'server'
  if (status === 403) return 'access-denied'
  if (status === 404) return 'not-found'
  return 'other'
}

const RETRYABLE: ReadonlySet<AwsErrorKind> = new Set(['throttled', 'server', 'unreachable'])

/**
 * What an unknown thrown value means for us. AWS SDK v3 errors carry the AWS code in `name`
 * (`Code` on some unmodelled query-protocol errors), the status in `$metadata.httpStatusCode`;
 * Node's socket errors carry `code`; the SDK's own timeouts are named TimeoutError.
 */
export const classifyAwsError = (e: unknown): AwsErrorInfo => {
  if (typeof e !== 'object' || e === null) {
    return { kind: 'other', code: 'Unknown', status: undefined, retryable: false, message: firstLine(String(e)) }
  }
  const name = stringField(e, 'name')
  const awsCode = stringField(e, 'Code')
  const nodeCode = stringField(e, 'code')
  // a plain Error named "Error" says nothing; prefer the more specific code when there is one
  const code = (name && name !== 'Error' ? name : undefined) ?? awsCode ?? nodeCode ?? name ?? 'Unknown'
  const status = httpStatus(e)
  let kind = kindOf(code, status, e)
  if (kind === 'other' && nodeCode && nodeCode !== code) kind = kindOf(nodeCode, status, e)
  return { kind, code, status, retryable: RETRYABLE.has(kind), message: firstLine(stringField(e, 'message') ?? code) }
}

const CODES: Record<AwsErrorKind, string> = {
  'throttled': 'AWS_THROTTLED',
  'server': 'AWS_SERVER_ERROR',
  'unreachable': 'AWS_UNREACHABLE',
  'access-denied': 'AWS_ACCESS_DENIED',
  'auth': 'AWS_AUTH_FAILED',
  'no-credentials': 'AWS_NO_CREDENTIALS',
  'not-found': 'AWS_NOT_FOUND',
  'unsupported': 'AWS_UNSUPPORTED',
  'invalid': 'AWS_INVALID_REQUEST',
  'other': 'AWS_ERROR',
}

const remedyFor = (kind: AwsErrorKind, c: AwsCall): string => {
  const on = c.resource ?? '*'
  switch (kind) {
    case 'access-denied': return `add ${c.service}:${c.action} on ${on} to the instance profile (see iam/agent-policy.json)`
    case 'auth': return 'the AWS credentials were rejected: check the instance profile (or AWS_PROFILE / AWS_ACCESS_KEY_ID) and the system clock'
    case 'no-credentials': return 'attach an instance profile with iam/agent-policy.json to the instance (or provide credentials through the standard AWS chain)'
    case 'not-found': return `check that ${on} exists in this account and region`
    case 'throttled': return 'AWS kept throttling the request: run again later, or raise the account quota'
    case 'server': return 'AWS kept answering with a server error: run again later'
    case 'unreachable': return `check that the instance can reach the ${c.service} endpoint (NAT or VPC endpoint, DNS), or AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_<SERVICE>`
    case 'unsupported': return `the endpoint does not support ${c.action}: check AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_<SERVICE>`
    case 'invalid': return 'the request was rejected as invalid: check the names in the configuration; if they are right, report it'
    case 'other': return 'run again with --log-level debug; report it if it persists'
  }
}

const describeCall = (c: AwsCall) => `${c.service}:${c.action}${c.resource ? ` on ${c.resource}` : ''}`

/** The AgentError for a failed AWS call; `cause` keeps the SDK error for debugging. */
export const awsError = (c: AwsCall, e: unknown, attempts = 1): AgentError => {
  const info = classifyAwsError(e)
  const tries = attempts > 1 ? ` after ${attempts} attempts` : ''
  const status = info.status === undefined ? '' : ` (HTTP ${info.status})`
  const detail = info.message && info.message !== info.code ? `: ${info.message}` : ''
  return new AgentError(`AWS ${describeCall(c)} failed${tries}: ${info.code}${status}${detail}`, {
    code: CODES[info.kind],
    remedy: remedyFor(info.kind, c),
    retryable: info.retryable,
    cause: e,
  })
}

const sleep = (ms: number) => new Promise<void>(resolve => setTimeout(resolve, ms))

/**
 * Throttling is not a lost packet: the account's token bucket is empty for every caller, in a
 * boot storm the whole fleet. Retried as fast as a reset connection, most retries are refused
 * again: 200 instances booting at once sent 10-14 retries each (p50) with the plain ceilings.
 * So throttling waits start 4 times higher (0.8 s) and grow to twice the cap (10 s): 5-9
 * retries each, at the same boot times (docs/reliability.md, "Boot storm"; a 20 s cap made the
 * tail longer). The SDK's own standard mode also waits longer after throttling.
 */
export const THROTTLED_BASE_FACTOR = 4
export const THROTTLED_CAP_FACTOR = 2

/** The ceiling of the full-jitter wait after failed attempt number `attempt` (1-based). */
export const backoffCeiling = (kind: AwsErrorKind, attempt: number, baseMs: number, capMs: number): number =>
  kind === 'throttled'
    ? Math.min(capMs * THROTTLED_CAP_FACTOR, baseMs * THROTTLED_BASE_FACTOR * 2 ** (attempt - 1))
    : Math.min(capMs, baseMs * 2 ** (attempt - 1))

/**
 * Runs `fn` until it succeeds, fails permanently, or `totalMs` have passed.
 * Full jitter: each wait is uniform in [0, backoffCeiling). A wait that would end past `totalMs`
 * is cut to end there, with one last attempt: giving up instead would leave up to a whole ceiling
 * of the budget unused (10 s of throttling backoff), and a lifecycle completion with it.
 * An AgentError thrown by `fn` is already a decision and passes through unchanged.
 */
export const withRetry = async <T>(what: AwsCall, fn: () => Promise<T>, opts: RetryOptions = {}): Promise<T> => {
  const totalMs = opts.totalMs ?? 60_000
  const baseMs = opts.baseMs ?? 200
  const capMs = opts.capMs ?? 5_000
  const started = Date.now()
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn()
    } catch (e) {
      if (isAgentError(e)) throw e
      const info = classifyAwsError(e)
      if (!info.retryable) throw awsError(what, e, attempt)
      const left = totalMs - (Date.now() - started)
      if (left <= 0) throw awsError(what, e, attempt)
      const delayMs = Math.min(left, Math.floor(Math.random() * backoffCeiling(info.kind, attempt, baseMs, capMs)))
      opts.onRetry?.({ attempt, code: info.code, delayMs })
      await sleep(delayMs)
    }
  }
}

/** Connect/answer limits for one attempt; the total is bounded by withRetry. */
export const CONNECT_TIMEOUT_MS = 3_000
export const REQUEST_TIMEOUT_MS = 15_000

/**
 * Config shared by our SDK clients: no SDK-level retries (counted in withRetry instead) and
 * bounded attempts, so a black-holed endpoint cannot hang a boot. Endpoints are not set here on
 * purpose: the SDK reads AWS_ENDPOINT_URL_<SERVICE> / AWS_ENDPOINT_URL itself.
 * `budgetMs` (--aws-timeout): withRetry only looks at its budget between attempts, so without this
 * cut an endpoint that never answers would hold a 3 s budget for one whole 15 s attempt.
 */
export const sdkClientConfig = (region: string, budgetMs = Number.POSITIVE_INFINITY) => ({
  region,
  maxAttempts: 1,
  requestHandler: {
    connectionTimeout: Math.min(CONNECT_TIMEOUT_MS, budgetMs),
    requestTimeout: Math.min(REQUEST_TIMEOUT_MS, budgetMs),
    throwOnRequestTimeout: true,
  },
})
