import t, { type Test } from 'tap'
import { awsError, backoffCeiling, classifyAwsError, sdkClientConfig, withRetry, type AwsErrorKind } from '../../../agent/src/aws/retry.js'
import { isAgentError } from '../../../agent/src/core/errors.js'
import { rejected } from '../../helpers/thrown.js'

/** Shaped like an AWS SDK v3 ServiceException: the code in `name`, the status in $metadata. */
const sdkError = (name: string, status: number, message = `${name} happened`) =>
  Object.assign(new Error(message), { name, $fault: status >= 500 ? 'server' : 'client', $metadata: { httpStatusCode: status } })

/** Shaped like Node's socket errors: a plain Error with `code`. */
const netError = (code: string, message = `connect ${code} 10.0.0.1:443`) => Object.assign(new Error(message), { code })

t.test('classification table', async t => {
  const table: [string, unknown, AwsErrorKind, boolean][] = [
    ['ThrottlingException', sdkError('ThrottlingException', 400), 'throttled', true],
    ['Throttling (query protocol)', sdkError('Throttling', 400), 'throttled', true],
    ['TooManyRequestsException', sdkError('TooManyRequestsException', 429), 'throttled', true],
    ['RequestLimitExceeded (EC2)', sdkError('RequestLimitExceeded', 503), 'throttled', true],
    ['ProvisionedThroughputExceededException', sdkError('ProvisionedThroughputExceededException', 400), 'throttled', true],
    ['any 429', sdkError('SomethingNew', 429), 'throttled', true],
    ['$retryable.throttling', Object.assign(sdkError('Odd', 400), { $retryable: { throttling: true } }), 'throttled', true],
    ['InternalServiceError', sdkError('InternalServiceError', 500), 'server', true],
    ['unknown 503', sdkError('Whatever', 503), 'server', true],
    ['ECONNRESET', netError('ECONNRESET'), 'unreachable', true],
    ['ECONNREFUSED', netError('ECONNREFUSED'), 'unreachable', true],
    ['ETIMEDOUT', netError('ETIMEDOUT'), 'unreachable', true],
    ['socket hang up', new Error('socket hang up'), 'unreachable', true],
    ['SDK TimeoutError', Object.assign(new Error('request timed out'), { name: 'TimeoutError' }), 'unreachable', true],
    ['AccessDeniedException', sdkError('AccessDeniedException', 400), 'access-denied', false],
    ['AccessDenied', sdkError('AccessDenied', 403), 'access-denied', false],
    ['UnauthorizedOperation (EC2)', sdkError('UnauthorizedOperation', 403), 'access-denied', false],
    ['InvalidClientTokenId', sdkError('InvalidClientTokenId', 403), 'auth', false],
    ['CredentialsProviderError', Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' }), 'no-credentials', false],
    ['ResourceNotFoundException', sdkError('ResourceNotFoundException', 400), 'not-found', false],
    ['ParameterNotFound', sdkError('ParameterNotFound', 400), 'not-found', false],
    ['InvalidInstanceID.NotFound', sdkError('InvalidInstanceID.NotFound', 400), 'not-found', false],
    ['ValidationError', sdkError('ValidationError', 400), 'invalid', false],
    ['ValidationException', sdkError('ValidationException', 400), 'invalid', false],
    ['InvalidParameterValue', sdkError('InvalidParameterValue', 400), 'invalid', false],
    ['InvalidParameterException', sdkError('InvalidParameterException', 400), 'invalid', false],
    ['UnknownOperationException', sdkError('UnknownOperationException', 400), 'unsupported', false],
    ['a bug, not AWS', new TypeError('x is not a function'), 'other', false],
    ['a string', 'boom', 'other', false],
    ['null', null, 'other', false],
  ]
  for (const [what, err, kind, retryable] of table) {
    const info = classifyAwsError(err)
    t.equal(info.kind, kind, `${what}: kind`)
    t.equal(info.retryable, retryable, `${what}: retryable`)
  }
  t.equal(classifyAwsError(sdkError('ThrottlingException', 400)).code, 'ThrottlingException', 'code from name')
  t.equal(classifyAwsError(sdkError('ThrottlingException', 400)).status, 400, 'status from $metadata')
  t.equal(classifyAwsError(netError('ECONNRESET')).code, 'ECONNRESET', 'code from a Node error')
  t.equal(classifyAwsError(new Error(`first\nsecond ${'x'.repeat(400)}`)).message, 'first', 'first line only')
})

t.test('awsError names service, action, resource; the remedy says what to add', async t => {
  const e = awsError({ service: 'secretsmanager', action: 'GetSecretValue', resource: 'stage/auth' }, sdkError('AccessDeniedException', 400, 'User: arn:aws:sts::1:assumed-role/r is not authorized'))
  t.equal(e.code, 'AWS_ACCESS_DENIED')
  t.match(e.message, /secretsmanager:GetSecretValue on stage\/auth failed: AccessDeniedException \(HTTP 400\): User: arn/)
  t.equal(e.remedy, 'add secretsmanager:GetSecretValue on stage/auth to the instance profile (see iam/agent-policy.json)')
  t.equal(e.retryable, false)
  t.equal(awsError({ service: 'ssm', action: 'GetParametersByPath' }, sdkError('ParameterNotFound', 400)).code, 'AWS_NOT_FOUND')
  t.equal(awsError({ service: 'ssm', action: 'GetParametersByPath' }, new Error('x')).code, 'AWS_ERROR')
})

t.test('transient errors are retried, then the call succeeds', async t => {
  const errors = [sdkError('ThrottlingException', 400), netError('ECONNRESET'), sdkError('InternalFailure', 500)]
  let calls = 0
  const retries: { attempt: number; code: string; delayMs: number }[] = []
  const r = await withRetry({ service: 'ssm', action: 'GetParametersByPath' }, async () => {
    calls++
    const e = errors.shift()
    if (e) throw e
    return 'ok'
  }, { baseMs: 10, capMs: 40, onRetry: i => retries.push(i) })
  t.equal(r, 'ok')
  t.equal(calls, 4)
  t.same(retries.map(i => [i.attempt, i.code]), [[1, 'ThrottlingException'], [2, 'ECONNRESET'], [3, 'InternalFailure']])
  const kinds: AwsErrorKind[] = ['throttled', 'unreachable', 'server']
  for (const i of retries) {
    const ceiling = backoffCeiling(kinds[i.attempt - 1] ?? 'server', i.attempt, 10, 40)
    t.ok(i.delayMs >= 0 && i.delayMs < ceiling, `full jitter below the ceiling (attempt ${i.attempt}: ${i.delayMs} ms < ${ceiling} ms)`)
  }
})

t.test('a permanent error fails at once, as an AgentError with the SDK error as cause', async t => {
  let calls = 0
  const cause = sdkError('AccessDeniedException', 400)
  const e = await rejected(() => withRetry({ service: 'secretsmanager', action: 'GetSecretValue', resource: 'stage/auth' }, async () => {
    calls++
    throw cause
  }))
  t.equal(calls, 1)
  t.ok(isAgentError(e))
  if (!isAgentError(e)) return
  t.equal(e.code, 'AWS_ACCESS_DENIED')
  t.equal(e.cause, cause)
})

t.test('an AgentError from inside passes through unchanged', async t => {
  const inner = awsError({ service: 'ec2', action: 'DescribeTags' }, sdkError('UnauthorizedOperation', 403))
  let calls = 0
  const e = await rejected(() => withRetry({ service: 'x', action: 'Y' }, async () => {
    calls++
    throw inner
  }))
  t.equal(e, inner)
  t.equal(calls, 1)
})

t.test('retries stop within the total time and report the last code', async t => {
  let calls = 0
  // the call keeps failing: only the 150 ms budget ends the retries (no timed assertion: that
  // the promise settles at all is the proof, tap's timeout the bound)
  const e = await rejected(() => withRetry({ service: 'autoscaling', action: 'CompleteLifecycleAction', resource: 'asg/hook' }, async () => {
    calls++
    throw sdkError('Throttling', 400, 'Rate exceeded')
  }, { totalMs: 150, baseMs: 20, capMs: 40 }))
  t.ok(calls > 1, `retried (${calls} calls)`)
  t.ok(isAgentError(e))
  if (!isAgentError(e)) return
  t.equal(e.code, 'AWS_THROTTLED')
  t.equal(e.retryable, true)
  t.match(e.message, new RegExp(`autoscaling:CompleteLifecycleAction on asg/hook failed after ${calls} attempts: Throttling \\(HTTP 400\\): Rate exceeded`))
})

t.test('backoff ceilings: doubling per attempt up to the cap; throttling starts 4x higher and may reach 2x the cap', async t => {
  const table: [AwsErrorKind, number, number][] = [
    ['server', 1, 200], ['server', 2, 400], ['server', 5, 3200], ['server', 6, 5000], ['server', 40, 5000],
    ['unreachable', 1, 200], ['unreachable', 6, 5000],
    ['throttled', 1, 800], ['throttled', 2, 1600], ['throttled', 4, 6400], ['throttled', 5, 10_000], ['throttled', 2000, 10_000],
  ]
  for (const [kind, attempt, ceiling] of table) t.equal(backoffCeiling(kind, attempt, 200, 5000), ceiling, `${kind}, attempt ${attempt}`)
})

/** Runs `fn` with Math.random pinned just below 1, so every full-jitter wait is its ceiling. */
const atCeiling = async <T>(t: Test, fn: () => Promise<T>): Promise<T> => {
  const random = Math.random
  Math.random = () => 0.9999
  t.teardown(() => void (Math.random = random))
  try {
    return await fn()
  } finally {
    Math.random = random
  }
}

t.test('a throttled call waits the throttling ceiling, a server error the plain one', async t => {
  const errors = [sdkError('ThrottlingException', 400), sdkError('Throttling', 400), sdkError('InternalFailure', 500)]
  const retries: { attempt: number; code: string; delayMs: number }[] = []
  await atCeiling(t, () => withRetry({ service: 'ssm', action: 'GetParametersByPath' }, async () => {
    const e = errors.shift()
    if (e) throw e
    return 'ok'
  }, { baseMs: 10, capMs: 1000, onRetry: i => retries.push(i) }))
  t.same(retries.map(i => [i.code, i.delayMs]), [['ThrottlingException', 39], ['Throttling', 79], ['InternalFailure', 39]])
})

t.test('the last wait is cut to the time left, for one last attempt, instead of giving up early', async t => {
  let calls = 0
  const retries: { attempt: number; code: string; delayMs: number }[] = []
  const e = await atCeiling(t, () => rejected(() => withRetry({ service: 'autoscaling', action: 'CompleteLifecycleAction', resource: 'asg/hook' }, async () => {
    calls++
    throw sdkError('Throttling', 400, 'Rate exceeded')
  }, { totalMs: 120, baseMs: 1000, capMs: 5000, onRetry: i => retries.push(i) })))
  // the first ceiling (4 s) is far past the 120 ms budget: the wait is cut to what is left
  t.equal(calls, 2, 'one attempt more, at the end of the budget')
  t.equal(retries.length, 1)
  t.ok((retries[0]?.delayMs ?? 0) <= 120, `the wait fits the budget (${retries[0]?.delayMs} ms)`)
  t.ok(isAgentError(e) && e.code === 'AWS_THROTTLED' && /after 2 attempts/.test(e.message), isAgentError(e) ? e.message : String(e))
})

t.test('network trouble that never ends is AWS_UNREACHABLE', async t => {
  const e = await rejected(() => withRetry({ service: 'ssm', action: 'GetParametersByPath' }, async () => {
    throw netError('ECONNREFUSED')
  }, { totalMs: 50, baseMs: 5, capMs: 10 }))
  t.ok(isAgentError(e) && e.code === 'AWS_UNREACHABLE')
  t.ok(isAgentError(e) && /AWS_ENDPOINT_URL/.test(e.remedy))
})

t.test('SDK clients make one attempt each; no endpoint is set (the SDK reads AWS_ENDPOINT_URL*)', async t => {
  const c = sdkClientConfig('eu-west-1')
  t.equal(c.region, 'eu-west-1')
  t.equal(c.maxAttempts, 1)
  t.notOk('endpoint' in c)
  t.equal(c.requestHandler.throwOnRequestTimeout, true)
})
