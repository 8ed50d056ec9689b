import t from 'tap'
import type { BatchGetSecretValueRequest, GetSecretValueRequest } from '@aws-sdk/client-secrets-manager'
import type { DescribeParametersRequest, GetParametersByPathRequest } from '@aws-sdk/client-ssm'
import { createAwsSecretsSource, type ParametersApi, type SecretsApi } from '../../../agent/src/aws/secrets.js'
import { isAgentError } from '../../../agent/src/core/errors.js'
import { rejected } from '../../helpers/thrown.js'

const SECRET_VALUE = 's3cr3t-Value-that-must-never-leak'
const ARN = (name: string) => `arn:aws:secretsmanager:eu-west-1:123456789012:secret:${name}-AbCdEf`

const sdkError = (name: string, status = 400, message = `${name} happened`) =>
  Object.assign(new Error(message), { name, $fault: status >= 500 ? 'server' : 'client', $metadata: { httpStatusCode: status } })

type Stored = { text: string } | { binary: Uint8Array } | { denied: true } | { decryption: true }

/** A fake Secrets Manager: records every request; pages its batch answers `perPage` at a time. */
const fakeSecrets = (store: Record<string, Stored>, o: { batch?: 'ok' | 'unknown-operation' | 'denied'; perPage?: number; throttleFirst?: number } = {}) => {
  const calls: { action: string; input: unknown }[] = []
  let throttles = o.throttleFirst ?? 0
  const api: SecretsApi = {
    async batchGetSecretValue(input: BatchGetSecretValueRequest) {
      calls.push({ action: 'BatchGetSecretValue', input })
      if (o.batch === 'unknown-operation') throw sdkError('UnknownOperationException')
      if (o.batch === 'denied') throw sdkError('AccessDeniedException', 400, 'not authorized to perform: secretsmanager:BatchGetSecretValue')
      if (throttles-- > 0) throw sdkError('ThrottlingException', 400, 'Rate exceeded')
      const ids = input.SecretIdList ?? []
      if (ids.length > 20) throw sdkError('InvalidParameterException', 400, 'too many ids')
      const start = Number(input.NextToken ?? '0')
      const perPage = o.perPage ?? ids.length
      const slice = ids.slice(start, start + perPage)
      const next = start + perPage < ids.length ? String(start + perPage) : undefined
      const SecretValues = []
      const Errors = []
      for (const id of slice) {
        const s = store[id]
        if (s === undefined) Errors.push({ SecretId: id, ErrorCode: 'ResourceNotFoundException', Message: "Secrets Manager can't find the specified secret." })
        else if ('denied' in s) Errors.push({ SecretId: id, ErrorCode: 'AccessDeniedException', Message: `not authorized to access ${id}` })
        else if ('decryption' in s) Errors.push({ SecretId: id, ErrorCode: 'DecryptionFailure', Message: 'KMS says no' })
        else SecretValues.push({ Name: id, ARN: ARN(id), ...('text' in s ? { SecretString: s.text } : { SecretBinary: s.binary }) })
      }
      return { SecretValues, Errors, ...(next ? { NextToken: next } : {}) }
    },
    async getSecretValue(input: GetSecretValueRequest) {
      calls.push({ action: 'GetSecretValue', input })
      const id = input.SecretId ?? ''
      const s = store[id]
      if (s === undefined) throw sdkError('ResourceNotFoundException', 400, "Secrets Manager can't find the specified secret.")
      if ('denied' in s) throw sdkError('AccessDeniedException', 400, `not authorized to access ${id}`)
      if ('decryption' in s) throw sdkError('DecryptionFailure', 400, 'KMS says no')
      return { Name: id, ARN: ARN(id), ...('text' in s ? { SecretString: s.text } : { SecretBinary: s.binary }) }
    },
    async describeSecret(input) {
      calls.push({ action: 'DescribeSecret', input })
      const id = input.SecretId ?? ''
      if (id === 'stage/deleted') return { Name: id, DeletedDate: new Date() }
      if (store[id] === undefined) throw sdkError('ResourceNotFoundException')
      return { Name: id, ARN: ARN(id) }
    },
  }
  return { api, calls }
}

const noParameters: ParametersApi = {
  async getParametersByPath() {
    throw new Error('not in this test')
  },
  async getParameter() {
    throw new Error('not in this test')
  },
  async describeParameters() {
    throw new Error('not in this test')
  },
}

const quick = { totalMs: 200, baseMs: 1, capMs: 5 }

t.test('BatchGetSecretValue: strings, binary, missing, in the order asked, all pages', async t => {
  const { api, calls } = fakeSecrets({
    'stage/auth': { text: JSON.stringify({ DB_PASSWORD: SECRET_VALUE }) },
    'stage/bin': { binary: new Uint8Array([1, 2, 3]) },
    'stage/shared': { text: '{"A":"1"}' },
  }, { perPage: 1 })
  const src = createAwsSecretsSource({ region: 'eu-west-1', secretsApi: api, parametersApi: noParameters, retry: quick })
  const got = await src.getSecrets(['stage/shared', 'stage/auth', 'stage/none', 'stage/bin'])
  t.same([...got.keys()], ['stage/shared', 'stage/auth', 'stage/none', 'stage/bin'])
  t.same(got.get('stage/auth'), { kind: 'string', text: JSON.stringify({ DB_PASSWORD: SECRET_VALUE }) })
  t.same(got.get('stage/bin'), { kind: 'binary' })
  t.same(got.get('stage/none'), { kind: 'missing' })
  t.same(calls.map(c => c.action), ['BatchGetSecretValue', 'BatchGetSecretValue', 'BatchGetSecretValue', 'BatchGetSecretValue'], 'one call per page, no GetSecretValue')
  t.same(calls.map(c => (c.input as BatchGetSecretValueRequest).NextToken), [undefined, '1', '2', '3'])
})

t.test('more than 20 ids: batches of 20; duplicates asked once', async t => {
  const store: Record<string, Stored> = {}
  const ids = Array.from({ length: 45 }, (_, i) => `stage/s${i}`)
  for (const id of ids) store[id] = { text: '{}' }
  const { api, calls } = fakeSecrets(store)
  const src = createAwsSecretsSource({ region: 'eu-west-1', secretsApi: api, parametersApi: noParameters })
  const got = await src.getSecrets([...ids, 'stage/s0'])
  t.equal(got.size, 45)
  t.same(calls.map(c => (c.input as BatchGetSecretValueRequest).SecretIdList?.length), [20, 20, 5])
})

t.test('ids asked by ARN are matched by ARN', async t => {
  const full = ARN('stage/auth')
  const partial = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:stage/auth'
  // Secrets Manager answers with the secret's name and full ARN, whatever form was asked
  const { api, calls } = fakeSecrets({})
  const byArn: SecretsApi = {
    ...api,
    async batchGetSecretValue() {
      return { SecretValues: [{ Name: 'stage/auth', ARN: full, SecretString: '{"A":"1"}' }] }
    },
  }
  const got = await createAwsSecretsSource({ region: 'eu-west-1', secretsApi: byArn, parametersApi: noParameters }).getSecrets([full, partial])
  t.same(got.get(full), { kind: 'string', text: '{"A":"1"}' })
  t.same(got.get(partial), { kind: 'string', text: '{"A":"1"}' })
  t.same(calls, [], 'both answered by the one batch call')
})

t.test('throttling of the batch call is retried', async t => {
  const { api, calls } = fakeSecrets({ 'stage/auth': { text: '{}' } }, { throttleFirst: 2 })
  const src = createAwsSecretsSource({ region: 'eu-west-1', secretsApi: api, parametersApi: noParameters, retry: quick })
  const got = await src.getSecrets(['stage/auth'])
  t.same(got.get('stage/auth'), { kind: 'string', text: '{}' })
  t.equal(calls.length, 3)
})

for (const batch of ['unknown-operation', 'denied'] as const) {
  t.test(`no BatchGetSecretValue (${batch}): one GetSecretValue per id, and no batch call after that`, async t => {
    const { api, calls } = fakeSecrets({ 'stage/auth': { text: SECRET_VALUE }, 'stage/bin': { binary: new Uint8Array([0]) } }, { batch })
    const src = createAwsSecretsSource({ region: 'eu-west-1', secretsApi: api, parametersApi: noParameters, retry: quick })
    const got = await src.getSecrets(['stage/auth', 'stage/missing', 'stage/bin'])
    t.same(got.get('stage/auth'), { kind: 'string', text: SECRET_VALUE })
    t.same(got.get('stage/missing'), { kind: 'missing' })
    t.same(got.get('stage/bin'), { kind: 'binary' })
    t.same(calls.map(c => c.action), ['BatchGetSecretValue', 'GetSecretValue', 'GetSecretValue', 'GetSecretValue'])
    calls.length = 0
    await src.getSecrets(['stage/auth'])
    t.same(calls.map(c => c.action), ['GetSecretValue'], 'the batch call is not tried again')
  })
}

t.test('a secret the policy does not allow: AWS_ACCESS_DENIED naming it, never its neighbours\' values', async t => {
  for (const batch of ['ok', 'unknown-operation'] as const) {
    const { api } = fakeSecrets({ 'stage/auth': { text: SECRET_VALUE }, 'prod/other': { denied: true } }, { batch })
    const src = createAwsSecretsSource({ region: 'eu-west-1', secretsApi: api, parametersApi: noParameters, retry: quick })
    const e = await rejected(() => src.getSecrets(['stage/auth', 'prod/other']))
    t.ok(isAgentError(e), batch)
    if (!isAgentError(e)) continue
    t.equal(e.code, 'AWS_ACCESS_DENIED', batch)
    t.match(e.message, /secretsmanager:GetSecretValue on prod\/other/, batch)
    t.equal(e.remedy, 'add secretsmanager:GetSecretValue on prod/other to the instance profile (see iam/agent-policy.json)', batch)
    t.notMatch(`${e.message} ${e.remedy} ${String(e.stack)}`, SECRET_VALUE, `${batch}: no secret value in the error`)
  }
})

t.test('DecryptionFailure names kms:Decrypt', async t => {
  const { api } = fakeSecrets({ 'stage/auth': { decryption: true } })
  const e = await rejected(() => createAwsSecretsSource({ region: 'eu-west-1', secretsApi: api, parametersApi: noParameters }).getSecrets(['stage/auth']))
  t.ok(isAgentError(e) && e.code === 'AWS_ACCESS_DENIED' && /kms:Decrypt/.test(e.remedy))
})

t.test('a secret scheduled for deletion is missing', async t => {
  const api: SecretsApi = {
    async batchGetSecretValue() {
      return { Errors: [{ SecretId: 'stage/old', ErrorCode: 'InvalidRequestException', Message: "You can't perform this operation on the secret because it was marked for deletion." }] }
    },
    async getSecretValue() {
      throw sdkError('InvalidRequestException', 400, "You can't perform this operation on the secret because it was marked for deletion.")
    },
    async describeSecret() {
      throw new Error('unused')
    },
  }
  const got = await createAwsSecretsSource({ region: 'eu-west-1', secretsApi: api, parametersApi: noParameters }).getSecrets(['stage/old'])
  t.same(got.get('stage/old'), { kind: 'missing' })
})

t.test('getParametersByPath: recursive, decrypted, every page', async t => {
  const all = Array.from({ length: 23 }, (_, i) => ({ Name: `/stage/auth/k${String(i).padStart(2, '0')}`, Value: `${SECRET_VALUE}-${i}`, Type: 'SecureString' as const }))
  const inputs: GetParametersByPathRequest[] = []
  const api: ParametersApi = {
    async getParametersByPath(input) {
      inputs.push(input)
      const start = Number(input.NextToken ?? '0')
      const next = start + 10 < all.length ? String(start + 10) : undefined
      return { Parameters: all.slice(start, start + 10), ...(next ? { NextToken: next } : {}) }
    },
    async getParameter() {
      throw new Error('unused')
    },
    async describeParameters() {
      throw new Error('unused')
    },
  }
  const src = createAwsSecretsSource({ region: 'eu-west-1', secretsApi: fakeSecrets({}).api, parametersApi: api })
  const got = await src.getParametersByPath('/stage/auth/')
  t.equal(got.length, 23)
  t.same(got[22], { name: '/stage/auth/k22', value: `${SECRET_VALUE}-22` })
  t.same(inputs.map(i => [i.Path, i.Recursive, i.WithDecryption, i.NextToken]), [
    ['/stage/auth/', true, true, undefined], ['/stage/auth/', true, true, '10'], ['/stage/auth/', true, true, '20'],
  ])
})

t.test('a denied parameter path is AWS_ACCESS_DENIED naming ssm:GetParametersByPath and the path', async t => {
  const api: ParametersApi = {
    async getParametersByPath() {
      throw sdkError('AccessDeniedException', 400, 'User is not authorized to perform: ssm:GetParametersByPath')
    },
    async getParameter() {
      throw new Error('unused')
    },
    async describeParameters() {
      throw new Error('unused')
    },
  }
  const e = await rejected(() => createAwsSecretsSource({ region: 'eu-west-1', secretsApi: fakeSecrets({}).api, parametersApi: api }).getParametersByPath('/prod/auth/'))
  t.ok(isAgentError(e))
  if (!isAgentError(e)) return
  t.equal(e.code, 'AWS_ACCESS_DENIED')
  t.equal(e.remedy, 'add ssm:GetParametersByPath on /prod/auth/ to the instance profile (see iam/agent-policy.json)')
})

t.test('dry run: parameter names by DescribeParameters and secret existence by DescribeSecret, no value read', async t => {
  const inputs: DescribeParametersRequest[] = []
  const params: ParametersApi = {
    async getParametersByPath() {
      throw new Error('a dry run must not read values')
    },
    async getParameter() {
      throw new Error('unused')
    },
    async describeParameters(input) {
      inputs.push(input)
      return input.NextToken
        ? { Parameters: [{ Name: '/stage/auth/a' }] }
        : { Parameters: [{ Name: '/stage/auth/db/password' }], NextToken: 'p2' }
    },
  }
  const { api, calls } = fakeSecrets({ 'stage/auth': { text: SECRET_VALUE } })
  const src = createAwsSecretsSource({ region: 'eu-west-1', secretsApi: api, parametersApi: params })
  t.same(await src.listParameterNames('/stage/auth/'), ['/stage/auth/a', '/stage/auth/db/password'])
  t.same(inputs[0]?.ParameterFilters, [{ Key: 'Path', Option: 'Recursive', Values: ['/stage/auth'] }], 'the Path filter takes no trailing slash')
  const exists = await src.describeSecrets(['stage/auth', 'stage/none', 'stage/deleted'])
  t.same([...exists], [['stage/auth', true], ['stage/none', false], ['stage/deleted', false]])
  t.same([...new Set(calls.map(c => c.action))], ['DescribeSecret'], 'no GetSecretValue / BatchGetSecretValue')
})
