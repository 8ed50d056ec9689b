import t from 'tap'
import { Writable } from 'node:stream'
import pino from 'pino'
import type { DescribeTagsRequest } from '@aws-sdk/client-ec2'
import { createAwsIdentity, type Ec2TagsApi, type Imds } from '../../../agent/src/aws/identity.js'
import { ExitCode, isAgentError } from '../../../agent/src/core/errors.js'
import { rejected } from '../../helpers/thrown.js'

/** A fake of our Imds seam: paths -> values; a missing path is a 404 (undefined). */
const fakeImds = (data: Record<string, string>, fail?: Error): Imds & { paths: string[] } => {
  const paths: string[] = []
  return {
    endpoint: 'http://imds.test',
    paths,
    async get(path) {
      paths.push(path)
      if (fail) throw fail
      return data[path]
    },
  }
}

const base = {
  'instance-id': 'i-0abc',
  'placement/region': 'eu-west-1',
  'placement/availability-zone': 'eu-west-1b',
}

t.test('tags from instance metadata', async t => {
  const imds = fakeImds({
    ...base,
    'autoscaling/target-lifecycle-state': 'InService',
    'tags/instance': 'Service\nEnvironment\naws:autoscaling:groupName',
    'tags/instance/Service': 'auth-service',
    'tags/instance/Environment': 'stage',
    'tags/instance/aws%3Aautoscaling%3AgroupName': 'web',
  })
  const noDescribeTags = (): Ec2TagsApi => {
    throw new Error('DescribeTags not expected')
  }
  const id = await createAwsIdentity({ imds, ec2Tags: noDescribeTags }).identify()
  t.same(id, {
    instanceId: 'i-0abc', region: 'eu-west-1', availabilityZone: 'eu-west-1b', lifecycleState: 'InService',
    tags: { 'Service': 'auth-service', 'Environment': 'stage', 'aws:autoscaling:groupName': 'web' },
    source: 'IMDSv2 http://imds.test (tags from instance metadata)',
  })
})

t.test('tagKeysNeeded limits which values are read; no lifecycle state outside a group', async t => {
  const imds = fakeImds({ ...base, 'tags/instance': 'Service\nOther', 'tags/instance/Service': 'auth', 'tags/instance/Other': 'x' })
  const id = await createAwsIdentity({ imds, tagKeysNeeded: ['Service', 'Environment'] }).identify()
  t.same(id.tags, { Service: 'auth' })
  t.equal(id.lifecycleState, undefined)
  t.notOk(imds.paths.includes('tags/instance/Other'))
})

t.test('instance metadata tags off (404): ec2:DescribeTags for this instance, all pages', async t => {
  const inputs: DescribeTagsRequest[] = []
  let regionAsked = ''
  const api: Ec2TagsApi = {
    async describeTags(input) {
      inputs.push(input)
      return input.NextToken
        ? { Tags: [{ Key: 'Environment', Value: 'prod', ResourceId: 'i-0abc', ResourceType: 'instance' }] }
        : { Tags: [{ Key: 'Service', Value: 'auth', ResourceId: 'i-0abc', ResourceType: 'instance' }], NextToken: 'n2' }
    },
  }
  const id = await createAwsIdentity({ imds: fakeImds(base), ec2Tags: r => ((regionAsked = r), api) }).identify()
  t.same(id.tags, { Service: 'auth', Environment: 'prod' })
  t.equal(regionAsked, 'eu-west-1')
  t.match(id.source, /ec2:DescribeTags/)
  t.same(inputs[0]?.Filters, [{ Name: 'resource-id', Values: ['i-0abc'] }])
  t.equal(inputs[1]?.NextToken, 'n2')
})

t.test('DescribeTags denied: says to enable metadata tags or add ec2:DescribeTags', async t => {
  const api: Ec2TagsApi = {
    async describeTags() {
      throw Object.assign(new Error('You are not authorized to perform this operation.'), { name: 'UnauthorizedOperation', $metadata: { httpStatusCode: 403 } })
    },
  }
  const e = await rejected(() => createAwsIdentity({ imds: fakeImds(base), ec2Tags: () => api }).identify())
  t.ok(isAgentError(e))
  if (!isAgentError(e)) return
  t.equal(e.code, 'AWS_ACCESS_DENIED')
  t.match(e.remedy, /InstanceMetadataTags=enabled/)
  t.match(e.remedy, /ec2:DescribeTags/)
})

t.test('IMDS unreachable: bad input (exit 2) that suggests --local', async t => {
  const e = await rejected(() => createAwsIdentity({ imds: fakeImds({}, Object.assign(new Error('connect EHOSTUNREACH 169.254.169.254:80'), { code: 'EHOSTUNREACH' })) }).identify())
  t.ok(isAgentError(e))
  if (!isAgentError(e)) return
  t.equal(e.code, 'IMDS_UNREACHABLE')
  t.equal(e.exitCode, ExitCode.badInput)
  t.match(e.remedy, /--local/)
  t.match(e.message, /http:\/\/imds\.test/)
})

t.test('the region falls back to the availability zone', async t => {
  const id = await createAwsIdentity({ imds: fakeImds({ 'instance-id': 'i-1', 'placement/availability-zone': 'ap-southeast-2c', 'tags/instance': '' }) }).identify()
  t.equal(id.region, 'ap-southeast-2')
})

t.test('a throttled DescribeTags is retried and each retry is logged', async t => {
  let calls = 0
  const api: Ec2TagsApi = {
    async describeTags() {
      if (++calls === 1) throw Object.assign(new Error('Request limit exceeded.'), { name: 'RequestLimitExceeded', $metadata: { httpStatusCode: 503 } })
      return { Tags: [{ Key: 'Service', Value: 'auth', ResourceId: 'i-0abc', ResourceType: 'instance' }] }
    },
  }
  const lines: Record<string, unknown>[] = []
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>)
      done()
    },
  })
  const id = await createAwsIdentity({ imds: fakeImds(base), ec2Tags: () => api, log: pino(stream) }).identify()
  t.same(id.tags, { Service: 'auth' })
  t.equal(calls, 2)
  t.match(lines.filter(l => l['aws'] === 'ec2:DescribeTags'), [{ code: 'RequestLimitExceeded', resource: 'i-0abc', attempt: 1 }])
})
