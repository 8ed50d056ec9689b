/**
 * SecretsSource on AWS: Secrets Manager and SSM Parameter Store behind two narrow interfaces
 * (`SecretsApi`, `ParametersApi`: only the calls we make). This file only fetches; the merge
 * rules live in secrets/source.ts. No secret value ever reaches an error, a log line or a
 * request parameter: messages name secret ids and parameter paths only.
 *
 * Secrets: BatchGetSecretValue (20 ids a call), falling back to one GetSecretValue per id when
 * the endpoint does not know the batch call or the policy lacks it. A secret that does not
 * exist, or is scheduled for deletion, is `missing` (mergeSecrets decides whether that is fatal).
 */
import {
  BatchGetSecretValueCommand, DescribeSecretCommand, GetSecretValueCommand, SecretsManagerClient,
  type BatchGetSecretValueRequest, type BatchGetSecretValueResponse, type DescribeSecretRequest, type DescribeSecretResponse,
  type GetSecretValueRequest, type GetSecretValueResponse,
} from '@aws-sdk/client-secrets-manager'
import {
  DescribeParametersCommand, GetParameterCommand, GetParametersByPathCommand, SSMClient,
  type DescribeParametersRequest, type DescribeParametersResult, type GetParameterRequest, type GetParameterResult,
  type GetParametersByPathRequest, type GetParametersByPathResult,
} from '@aws-sdk/client-ssm'
import { awsError, classifyAwsError, sdkClientConfig, withRetry, type AwsCall, type RetryOptions } from './retry.js'
import { AgentError, isAgentError } from '../core/errors.js'
import type { Logger } from '../core/logger.js'
import type { Parameter, SecretPayload, SecretsSource } from '../secrets/source.js'

/** The subset of the Secrets Manager API we use. */
export interface SecretsApi {
  batchGetSecretValue(input: BatchGetSecretValueRequest): Promise<BatchGetSecretValueResponse>
  getSecretValue(input: GetSecretValueRequest): Promise<GetSecretValueResponse>
  describeSecret(input: DescribeSecretRequest): Promise<DescribeSecretResponse>
}

/** The subset of the SSM API we use. */
export interface ParametersApi {
  getParametersByPath(input: GetParametersByPathRequest): Promise<GetParametersByPathResult>
  getParameter(input: GetParameterRequest): Promise<GetParameterResult>
  describeParameters(input: DescribeParametersRequest): Promise<DescribeParametersResult>
}

export const createSecretsApi = (region: string, budgetMs?: number): SecretsApi => {
  const sm = new SecretsManagerClient(sdkClientConfig(region, budgetMs))
  return {
    batchGetSecretValue: input => sm.send(new BatchGetSecretValueCommand(input)),
    getSecretValue: input => sm.send(new GetSecretValueCommand(input)),
    describeSecret: input => sm.send(new DescribeSecretCommand(input)),
  }
}

export const createParametersApi = (region: string, budgetMs?: number): ParametersApi => {
  const ssm = new SSMClient(sdkClientConfig(region, budgetMs))
  return {
    getParametersByPath: input => ssm.send(new GetParametersByPathCommand(input)),
    getParameter: input => ssm.send(new GetParameterCommand(input)),
    describeParameters: input => ssm.send(new DescribeParametersCommand(input)),
  }
}

export interface AwsSecretsOptions {
  region: string
  secretsApi?: SecretsApi
  parametersApi?: ParametersApi
  log?: Logger
  retry?: RetryOptions
}

/** SecretsSource with the dry-run helpers, which AWS always has. */
export type AwsSecretsSource = SecretsSource & Required<Pick<SecretsSource, 'listParameterNames' | 'describeSecrets'>>

const BATCH_SIZE = 20

/** GetSecretValue on a secret scheduled for deletion: InvalidRequestException "...marked for deletion". */
const isMarkedForDeletion = (code: string, message: string | undefined) =>
  code === 'InvalidRequestException' && /marked for deletion/i.test(message ?? '')

const payloadOf = (v: { SecretString?: string | undefined; SecretBinary?: Uint8Array | undefined }): SecretPayload =>
  v.SecretString !== undefined
    ? { kind: 'string', text: v.SecretString }
    : v.SecretBinary !== undefined
      ? { kind: 'binary' }
      // a secret with no current version: GetSecretValue would answer ResourceNotFoundException
      : { kind: 'missing' }

/** The ids we asked for that an answer is about: by name, full ARN or partial ARN (no suffix). */
const requestedIds = (ids: readonly string[], name: string | undefined, arn: string | undefined): string[] =>
  ids.filter(id => id === name || id === arn || (arn !== undefined && id.startsWith('arn:') && arn.startsWith(`${id}-`)))

const secretError = (id: string, code: string, message: string | undefined, cause?: unknown): AgentError => {
  const call: AwsCall = { service: 'secretsmanager', action: 'GetSecretValue', resource: id }
  if (code === 'DecryptionFailure') {
    return new AgentError(`AWS secretsmanager:GetSecretValue on ${id} failed: DecryptionFailure: the secret's KMS key could not be used`, {
      code: 'AWS_ACCESS_DENIED',
      remedy: `allow kms:Decrypt on the KMS key of secret ${id} for the instance profile (see iam/agent-policy.json)`,
      cause,
    })
  }
  return awsError(call, cause ?? Object.assign(new Error(message ?? code), { name: code }))
}

const chunks = <T>(items: readonly T[], size: number): T[][] => {
  const out: T[][] = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

/** Path filter values take no trailing slash; "/" itself stays. */
const pathFilterValue = (path: string) => (path.length > 1 ? path.replace(/\/+$/, '') : path)

export const createAwsSecretsSource = (opts: AwsSecretsOptions): AwsSecretsSource => {
  let secretsApi: SecretsApi | undefined = opts.secretsApi
  let parametersApi: ParametersApi | undefined = opts.parametersApi
  const sm = () => (secretsApi ??= createSecretsApi(opts.region, opts.retry?.totalMs))
  const ssm = () => (parametersApi ??= createParametersApi(opts.region, opts.retry?.totalMs))
  const retry = (call: AwsCall) => <T>(fn: () => Promise<T>) =>
    withRetry(call, fn, {
      ...opts.retry,
      onRetry: i => {
        opts.log?.warn({ aws: `${call.service}:${call.action}`, resource: call.resource, ...i }, `AWS ${call.action} failed (${i.code}); retrying`)
        opts.retry?.onRetry?.(i)
      },
    })
  /** false once the endpoint or the policy refused BatchGetSecretValue: use GetSecretValue from then on */
  let batchWorks = true

  const getOne = async (id: string): Promise<SecretPayload> => {
    const call: AwsCall = { service: 'secretsmanager', action: 'GetSecretValue', resource: id }
    try {
      return await retry(call)(async () => {
        try {
          return payloadOf(await sm().getSecretValue({ SecretId: id }))
        } catch (e) {
          const info = classifyAwsError(e)
          if (info.kind === 'not-found' || isMarkedForDeletion(info.code, info.message)) return { kind: 'missing' } as const
          throw e
        }
      })
    } catch (e) {
      throw isAgentError(e) ? e : secretError(id, classifyAwsError(e).code, undefined, e)
    }
  }

  /**
   * One batch of at most 20 ids, all pages; ids the answer does not mention are left out.
   * false: the endpoint does not know BatchGetSecretValue, or the policy does not allow it.
   */
  const getBatch = async (ids: readonly string[], out: Map<string, SecretPayload>): Promise<boolean> => {
    const call: AwsCall = { service: 'secretsmanager', action: 'BatchGetSecretValue', resource: ids.join(', ') }
    let NextToken: string | undefined
    do {
      let page: BatchGetSecretValueResponse
      try {
        page = await retry(call)(() => sm().batchGetSecretValue({ SecretIdList: [...ids], NextToken }))
      } catch (e) {
        if (isAgentError(e) && (e.code === 'AWS_UNSUPPORTED' || e.code === 'AWS_ACCESS_DENIED')) return false
        throw e
      }
      for (const v of page.SecretValues ?? []) {
        for (const id of requestedIds(ids, v.Name, v.ARN)) out.set(id, payloadOf(v))
      }
      for (const err of page.Errors ?? []) {
        const id = err.SecretId ?? '(unknown secret)'
        const code = err.ErrorCode ?? 'Unknown'
        if (classifyAwsError({ name: code }).kind === 'not-found' || isMarkedForDeletion(code, err.Message)) out.set(id, { kind: 'missing' })
        else throw secretError(id, code, err.Message)
      }
      NextToken = page.NextToken || undefined
    } while (NextToken)
    return true
  }

  return {
    description: `AWS Secrets Manager + SSM Parameter Store (${opts.region})`,

    async getSecrets(ids) {
      const unique = [...new Set(ids)]
      const found = new Map<string, SecretPayload>()
      for (const batch of chunks(unique, BATCH_SIZE)) {
        if (!batchWorks) break
        if (!(await getBatch(batch, found))) {
          batchWorks = false
          opts.log?.info('BatchGetSecretValue is not available (endpoint or policy); reading each secret with GetSecretValue')
        }
      }
      // what the batch did not answer for (or everything, without the batch call), one by one
      for (const id of unique) if (!found.has(id)) found.set(id, await getOne(id))
      return new Map(ids.map(id => [id, found.get(id) ?? { kind: 'missing' }]))
    },

    async getParametersByPath(path) {
      const call: AwsCall = { service: 'ssm', action: 'GetParametersByPath', resource: path }
      const out: Parameter[] = []
      let NextToken: string | undefined
      do {
        const page = await retry(call)(() => ssm().getParametersByPath({ Path: path, Recursive: true, WithDecryption: true, MaxResults: 10, NextToken }))
        for (const p of page.Parameters ?? []) if (p.Name !== undefined && p.Value !== undefined) out.push({ name: p.Name, value: p.Value })
        NextToken = page.NextToken || undefined
      } while (NextToken)
      return out
    },

    async getParameter(name) {
      const call: AwsCall = { service: 'ssm', action: 'GetParameter', resource: name }
      return retry(call)(async () => {
        try {
          return (await ssm().getParameter({ Name: name, WithDecryption: true })).Parameter?.Value
        } catch (e) {
          if (classifyAwsError(e).kind === 'not-found') return undefined
          throw e
        }
      })
    },

    async listParameterNames(path) {
      const call: AwsCall = { service: 'ssm', action: 'DescribeParameters', resource: path }
      const names: string[] = []
      let NextToken: string | undefined
      do {
        const page = await retry(call)(() => ssm().describeParameters({
          ParameterFilters: [{ Key: 'Path', Option: 'Recursive', Values: [pathFilterValue(path)] }],
          MaxResults: 50,
          NextToken,
        }))
        for (const p of page.Parameters ?? []) if (p.Name !== undefined) names.push(p.Name)
        NextToken = page.NextToken || undefined
      } while (NextToken)
      return names.sort()
    },

    async describeSecrets(ids) {
      const out = new Map<string, boolean>()
      for (const id of new Set(ids)) {
        const call: AwsCall = { service: 'secretsmanager', action: 'DescribeSecret', resource: id }
        const exists = await retry(call)(async () => {
          try {
            const d = await sm().describeSecret({ SecretId: id })
            return d.DeletedDate === undefined
          } catch (e) {
            if (classifyAwsError(e).kind === 'not-found') return false
            throw e
          }
        })
        out.set(id, exists)
      }
      return out
    },
  }
}
