/**
 * The AWS Identity: who this instance is, read from IMDSv2 only (invariant 8), and its tags from
 * instance metadata (`tags/instance`) or, when instance metadata tags are turned off, from
 * ec2:DescribeTags. Two narrow seams, `Imds` and `Ec2TagsApi`, so unit tests fake them.
 *
 * IMDSv1 is impossible here: `MetadataService` is built with `ec2MetadataV1Disabled: true`.
 * Without it the package silently retries a request *without* a token whenever the token PUT
 * fails (and a 403/404/405 or timeout on the PUT makes it stop fetching tokens for good).
 * The endpoint comes from AWS_EC2_METADATA_SERVICE_ENDPOINT (the package reads it itself, then
 * the profile's ec2_metadata_service_endpoint, then http://169.254.169.254).
 */
import type { DescribeTagsRequest, DescribeTagsResult } from '@aws-sdk/client-ec2'
import { MetadataService } from '@aws-sdk/ec2-metadata-service'
import { awsError, classifyAwsError, sdkClientConfig, withRetry } from './retry.js'
import { AgentError, ExitCode, isAgentError } from '../core/errors.js'
import type { Identity, InstanceIdentity } from '../seams/identity.js'
import type { Logger } from '../core/logger.js'

/** The subset of IMDSv2 we use: a GET under /latest/meta-data/; 404 is a value (undefined). */
export interface Imds {
  /** for messages: where we looked */
  readonly endpoint: string
  get(path: string): Promise<string | undefined>
}

/** The subset of the EC2 API we use. */
export interface Ec2TagsApi {
  describeTags(input: DescribeTagsRequest): Promise<DescribeTagsResult>
}

export interface ImdsOptions {
  /** default: what the package resolves (AWS_EC2_METADATA_SERVICE_ENDPOINT, profile, 169.254.169.254) */
  endpoint?: string
  /** per HTTP request, token PUT included (2 s: IMDS answers in milliseconds on EC2) */
  timeoutMs?: number
  /** extra attempts per path for timeouts, 401 and 5xx (2); 400/403/404 are never retried */
  retries?: number
}

const DEFAULT_IMDS_ENDPOINT = 'http://169.254.169.254'

export const createImds = (opts: ImdsOptions = {}): Imds => {
  const service = new MetadataService({
    ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
    ec2MetadataV1Disabled: true,
    disableFetchToken: false,
    retries: opts.retries ?? 2,
    // seconds: 0.2, 0.4, ...
    backoff: (failures: number) => 0.2 * 2 ** failures,
    httpOptions: { timeout: opts.timeoutMs ?? 2_000 },
  })
  return {
    endpoint: opts.endpoint ?? process.env['AWS_EC2_METADATA_SERVICE_ENDPOINT'] ?? DEFAULT_IMDS_ENDPOINT,
    async get(path) {
      try {
        return await service.request(`/latest/meta-data/${path}`, {})
      } catch (e) {
        if (classifyAwsError(e).status === 404) return undefined
        throw e
      }
    },
  }
}

/** ec2:DescribeTags through the SDK; the client module is loaded only when this fallback runs. */
export const createEc2TagsApi = (region: string): Ec2TagsApi => {
  let client: Promise<(input: DescribeTagsRequest) => Promise<DescribeTagsResult>> | undefined
  const load = async () => {
    const { EC2Client, DescribeTagsCommand } = await import('@aws-sdk/client-ec2')
    const ec2 = new EC2Client(sdkClientConfig(region))
    return (input: DescribeTagsRequest) => ec2.send(new DescribeTagsCommand(input))
  }
  return {
    async describeTags(input) {
      const send = await (client ??= load())
      return send(input)
    },
  }
}

export interface AwsIdentityOptions {
  imds?: Imds
  ec2Tags?: (region: string) => Ec2TagsApi
  /** read only these tags' values (all tags when undefined) */
  tagKeysNeeded?: readonly string[]
  log?: Logger
}

/** After a 403/404/405 on the token PUT the package stops asking for tokens and says only this. */
const TOKEN_REFUSED = /fetching token is disabled/

const unreachable = (imds: Imds, e: unknown): AgentError => {
  const detail = classifyAwsError(e).message
  const why = TOKEN_REFUSED.test(detail) ? 'the IMDSv2 token request (PUT /latest/api/token) was refused, and IMDSv1 is never used' : detail
  return new AgentError(`the instance metadata service (IMDSv2) at ${imds.endpoint} did not answer: ${why}`, {
    code: 'IMDS_UNREACHABLE',
    remedy: 'not on EC2? use --local (or BOOTSTRAP_LOCAL=1). On EC2: enable the metadata endpoint (HttpEndpoint=enabled, HttpTokens=required) and, in a container, set HttpPutResponseHopLimit to 2',
    exitCode: ExitCode.badInput,
    cause: e,
  })
}

const imdsFailed = (imds: Imds, path: string, e: unknown): AgentError =>
  new AgentError(`instance metadata ${path} could not be read from ${imds.endpoint}: ${classifyAwsError(e).message}`, {
    code: 'IMDS_ERROR',
    remedy: 'run again; if it persists, check the instance metadata options of the instance',
    retryable: true,
    cause: e,
  })

const readTagsFromImds = async (imds: Imds, keysNeeded: readonly string[] | undefined): Promise<Record<string, string> | undefined> => {
  const list = await imds.get('tags/instance')
  if (list === undefined) return undefined
  const keys = list.split('\n').map(k => k.trim()).filter(k => k !== '' && (keysNeeded === undefined || keysNeeded.includes(k)))
  const values = await Promise.all(keys.map(async k => [k, await imds.get(`tags/instance/${encodeURIComponent(k)}`)] as const))
  const tags: Record<string, string> = {}
  // a value that vanished between the two reads is a tag removed meanwhile
  for (const [k, v] of values) if (v !== undefined) tags[k] = v
  return tags
}

const readTagsFromApi = async (api: Ec2TagsApi, instanceId: string, keysNeeded: readonly string[] | undefined, log: Logger | undefined): Promise<Record<string, string>> => {
  const call = { service: 'ec2', action: 'DescribeTags', resource: instanceId }
  const tags: Record<string, string> = {}
  let NextToken: string | undefined
  try {
    do {
      const page = await withRetry(call, () => api.describeTags({ Filters: [{ Name: 'resource-id', Values: [instanceId] }], MaxResults: 1000, NextToken }), {
        onRetry: i => log?.warn({ aws: 'ec2:DescribeTags', resource: instanceId, ...i }, `AWS DescribeTags failed (${i.code}); retrying`),
      })
      for (const t of page.Tags ?? []) {
        if (t.Key !== undefined && (keysNeeded === undefined || keysNeeded.includes(t.Key))) tags[t.Key] = t.Value ?? ''
      }
      NextToken = page.NextToken || undefined
    } while (NextToken)
  } catch (e) {
    const err = isAgentError(e) ? e : awsError(call, e)
    if (err.code !== 'AWS_ACCESS_DENIED') throw err
    throw new AgentError(`${err.message} (instance metadata tags are turned off, so the tags were asked of the EC2 API)`, {
      code: err.code,
      remedy: 'enable instance metadata tags (launch template MetadataOptions InstanceMetadataTags=enabled), or add ec2:DescribeTags to the instance profile (see iam/agent-policy.json)',
      cause: e,
    })
  }
  return tags
}

export const createAwsIdentity = (opts: AwsIdentityOptions = {}): Identity => ({
  async identify(): Promise<InstanceIdentity> {
    const imds = opts.imds ?? createImds()
    let instanceId: string | undefined
    try {
      instanceId = await imds.get('instance-id')
    } catch (e) {
      throw unreachable(imds, e)
    }
    if (!instanceId) throw unreachable(imds, new Error('instance-id: 404 Not Found'))
    const read = async (path: string) => {
      try {
        return await imds.get(path)
      } catch (e) {
        throw imdsFailed(imds, path, e)
      }
    }
    const [regionRaw, availabilityZone, lifecycleState] = await Promise.all([
      read('placement/region'),
      read('placement/availability-zone'),
      read('autoscaling/target-lifecycle-state'),
    ])
    // placement/region is newer than placement/availability-zone: us-east-1a -> us-east-1
    // (a Local Zone such as us-west-2-lax-1a cannot be mapped this way, hence the strict pattern)
    const region = regionRaw ?? /^([a-z]{2}(?:-[a-z]+)+-\d+)[a-z]$/.exec(availabilityZone ?? '')?.[1]
    let tags: Record<string, string> | undefined
    try {
      tags = await readTagsFromImds(imds, opts.tagKeysNeeded)
    } catch (e) {
      throw imdsFailed(imds, 'tags/instance', e)
    }
    let source = `IMDSv2 ${imds.endpoint} (tags from instance metadata)`
    if (tags === undefined) {
      if (!region) throw imdsFailed(imds, 'placement/region', new Error('404 Not Found: no region to ask ec2:DescribeTags in'))
      opts.log?.info({ instanceId, region }, 'instance metadata tags are turned off; reading the tags with ec2:DescribeTags')
      const api = (opts.ec2Tags ?? createEc2TagsApi)(region)
      tags = await readTagsFromApi(api, instanceId, opts.tagKeysNeeded, opts.log)
      source = `IMDSv2 ${imds.endpoint} + ec2:DescribeTags (instance metadata tags are off)`
    }
    return { instanceId, region, availabilityZone, tags, lifecycleState, source }
  },
})
