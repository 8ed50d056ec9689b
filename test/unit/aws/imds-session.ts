/**
 * The IMDSv2 session against our IMDSv2 test server on loopback (this unit test opts in to a
 * local server: the token's lifetime and the 401s are HTTP behaviour a fake would only restate).
 * The clock is injected, so token expiry needs no waiting.
 */
import t from 'tap'
import { createImdsSession } from '../../../agent/src/aws/imds-session.js'
import { isAgentError } from '../../../agent/src/core/errors.js'
import { startImdsServer } from '../../helpers/imds-server.js'
import { rejected } from '../../helpers/thrown.js'

const imds = await startImdsServer({ instanceId: 'i-0abc', region: 'eu-west-1', az: 'eu-west-1a', tags: {}, lifecycleState: 'InService' })
t.teardown(() => imds.stop())

const puts = () => imds.requests.filter(r => r.method === 'PUT').length

t.test('one token for many requests, renewed with a quarter of its lifetime left', async t => {
  let now = 1_000_000
  const s = createImdsSession({ endpoint: imds.endpoint, tokenTtlS: 8, now: () => now })
  const before = puts()
  t.equal(await s.get('autoscaling/target-lifecycle-state'), 'InService')
  t.equal(await s.get('instance-id'), 'i-0abc')
  t.equal(puts() - before, 1, 'one token PUT for two reads')
  now += 5_900
  await s.get('instance-id')
  t.equal(puts() - before, 1, 'still valid with more than 2 s of its 8 s left')
  now += 200
  await s.get('instance-id')
  t.equal(puts() - before, 2, 'renewed at 6 s, before it expires at 8 s')
  t.equal(s.tokensFetched, 2)
  t.equal(imds.tokenlessRequests, 0, 'never a request without a token (IMDSv1)')
})

t.test('404 is a value; a token the server no longer knows is replaced once', async t => {
  const s = createImdsSession({ endpoint: `${imds.endpoint}/`, tokenTtlS: 21600 })
  t.equal(await s.get('spot/instance-action'), undefined)
  imds.set({ spotAction: { action: 'stop', time: '2026-01-01T00:02:00Z' } })
  t.teardown(() => imds.set({ spotAction: undefined }))
  t.same(JSON.parse((await s.get('spot/instance-action')) ?? ''), { action: 'stop', time: '2026-01-01T00:02:00Z' })
  // a 1 s token on the server while the client believes in 21600 s: the server refuses it later
  let now = 0
  const stale = createImdsSession({ endpoint: imds.endpoint, tokenTtlS: 1, now: () => now })
  await stale.get('instance-id')
  now = -10_000_000 // the client's clock says the token is fresh
  await new Promise(r => setTimeout(r, 1100))
  t.equal(await stale.get('instance-id'), 'i-0abc', 'a 401 fetched a new token and the read succeeded')
  t.equal(stale.tokensFetched, 2)
})

t.test('unreachable: a retryable IMDS_ERROR naming the endpoint; fine again afterwards', async t => {
  const s = createImdsSession({ endpoint: imds.endpoint, timeoutMs: 500 })
  imds.set({ unreachable: true })
  const e = await rejected(() => s.get('instance-id'))
  t.ok(isAgentError(e))
  t.match(e, { code: 'IMDS_ERROR', retryable: true, message: new RegExp(`instance metadata \\(IMDSv2\\) at ${imds.endpoint}: PUT /latest/api/token failed`) })
  imds.set({ unreachable: false })
  t.equal(await s.get('instance-id'), 'i-0abc', 'no permanent give-up after a failure (unlike the SDK package)')
  imds.set({ stallMs: 1000 })
  t.match(await rejected(() => s.get('instance-id')), { code: 'IMDS_ERROR', message: /no answer within 500 ms/ })
  imds.set({ stallMs: 0 })
})

t.test('other statuses are errors with the status', async t => {
  const s = createImdsSession({ endpoint: imds.endpoint, tokenTtlS: 30000 })
  t.match(await rejected(() => s.get('instance-id')), { code: 'IMDS_ERROR', message: /PUT \/latest\/api\/token failed: HTTP 400/ })
})
