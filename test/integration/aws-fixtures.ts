/**
 * Proves the AWS test fixtures with the real AWS SDK v3 clients: moto server (Secrets Manager,
 * SSM, EC2, Auto Scaling and its request recorder), the lifecycle proxy in front of it
 * (CompleteLifecycleAction, RecordLifecycleActionHeartbeat, injected failures) and the IMDSv2
 * server (through @aws-sdk/ec2-metadata-service). The error shapes asserted here are the ones
 * the agent's error mapping can rely on.
 */
import { randomBytes } from 'node:crypto'
import {
  AutoScalingClient,
  AutoScalingServiceException,
  CompleteLifecycleActionCommand,
  CreateAutoScalingGroupCommand,
  CreateLaunchConfigurationCommand,
  DescribeAutoScalingInstancesCommand,
  DescribeLifecycleHooksCommand,
  PutLifecycleHookCommand,
  RecordLifecycleActionHeartbeatCommand,
} from '@aws-sdk/client-auto-scaling'
import { CreateTagsCommand, DescribeImagesCommand, DescribeTagsCommand, EC2Client, RunInstancesCommand } from '@aws-sdk/client-ec2'
import {
  BatchGetSecretValueCommand,
  CreateSecretCommand,
  GetSecretValueCommand,
  SecretsManagerClient,
  SecretsManagerServiceException,
} from '@aws-sdk/client-secrets-manager'
import { DescribeParametersCommand, GetParametersByPathCommand, PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm'
import { MetadataService } from '@aws-sdk/ec2-metadata-service'
import t from 'tap'
import { startImdsServer } from '../helpers/imds-server.js'
import { startLifecycleProxy } from '../helpers/lifecycle-proxy.js'
import { startMoto } from '../helpers/moto.js'
import { rejected } from '../helpers/thrown.js'

const moto = await startMoto()
t.teardown(() => moto.stop())
const proxy = await startLifecycleProxy(moto.endpoint)
t.teardown(() => proxy.stop())

const aws = (endpoint: string) => ({ region: 'us-east-1', endpoint, credentials: { accessKeyId: 'test', secretAccessKey: 'test' } })
const secrets = new SecretsManagerClient(aws(moto.endpoint))
const ssm = new SSMClient(aws(moto.endpoint))
const ec2 = new EC2Client(aws(moto.endpoint))
// through the proxy: forwarded calls and the two lifecycle calls it answers itself
const asg = new AutoScalingClient(aws(proxy.endpoint))

const unique = () => randomBytes(12).toString('hex')

/** name, message and HTTP status of an SDK error, for asserting and for the record */
const shape = (e: unknown) => {
  if (e instanceof SecretsManagerServiceException || e instanceof AutoScalingServiceException) {
    return { name: e.name, message: e.message, status: e.$metadata.httpStatusCode, fault: e.$fault, attempts: e.$metadata.attempts }
  }
  throw e
}

/** message and $metadata of any error that carries $metadata (SDK deserialization, MetadataService) */
const withMetadata = (e: unknown) => {
  if (!(e instanceof Error) || !('$metadata' in e)) throw e
  return { message: e.message, metadata: e.$metadata }
}

await moto.startRecording()

t.test('Secrets Manager: BatchGetSecretValue and a missing secret', async (t) => {
  const values = { 'app/test/API_KEY': `api-${unique()}`, 'app/test/DB_URL': `db-${unique()}` }
  for (const [Name, SecretString] of Object.entries(values)) await secrets.send(new CreateSecretCommand({ Name, SecretString }))
  const batch = await secrets.send(new BatchGetSecretValueCommand({ SecretIdList: Object.keys(values) }))
  const got = Object.fromEntries((batch.SecretValues ?? []).map((s) => [s.Name, s.SecretString]))
  t.same(got, values)
  t.same(batch.Errors ?? [], [])

  const missing = shape(await rejected(() => secrets.send(new GetSecretValueCommand({ SecretId: 'app/test/NOPE' }))))
  t.comment(`missing secret: ${JSON.stringify(missing)}`)
  t.equal(missing.name, 'ResourceNotFoundException')
  t.equal(missing.message, "Secrets Manager can't find the specified secret.")
  // not asserted: moto answers 404 where AWS answers 400; the agent must go by name, not status
})

t.test('SSM: SecureString by path, recursive, decrypted', async (t) => {
  const key = `k-${unique()}`
  await ssm.send(new PutParameterCommand({ Name: '/app/test/API_KEY', Value: key, Type: 'SecureString' }))
  await ssm.send(new PutParameterCommand({ Name: '/app/test/nested/LEVEL', Value: 'debug', Type: 'String' }))
  await ssm.send(new PutParameterCommand({ Name: '/app/stage/API_KEY', Value: 'other', Type: 'String' }))
  const out = await ssm.send(new GetParametersByPathCommand({ Path: '/app/test', Recursive: true, WithDecryption: true }))
  const got = Object.fromEntries((out.Parameters ?? []).map((p) => [p.Name, [p.Type, p.Value]]))
  t.same(got, { '/app/test/API_KEY': ['SecureString', key], '/app/test/nested/LEVEL': ['String', 'debug'] })

  const described = await ssm.send(new DescribeParametersCommand({ ParameterFilters: [{ Key: 'Path', Option: 'Recursive', Values: ['/app/test'] }] }))
  t.same((described.Parameters ?? []).map((p) => p.Name).sort(), ['/app/test/API_KEY', '/app/test/nested/LEVEL'])
})

let instanceId = ''
const hookName = 'bootstrap'
const asgName = `asg-${unique()}`

t.test('EC2 tags and an Auto Scaling group with a launch hook', async (t) => {
  const images = await ec2.send(new DescribeImagesCommand({}))
  const imageId = images.Images?.[0]?.ImageId
  if (!imageId) throw new Error('moto offered no AMI')
  const run = await ec2.send(new RunInstancesCommand({ ImageId: imageId, MinCount: 1, MaxCount: 1, InstanceType: 't3.micro' }))
  const loose = run.Instances?.[0]?.InstanceId ?? ''
  await ec2.send(new CreateTagsCommand({ Resources: [loose], Tags: [{ Key: 'Branch', Value: 'stage' }, { Key: 'app:name', Value: 'web api' }] }))
  const tags = await ec2.send(new DescribeTagsCommand({ Filters: [{ Name: 'resource-id', Values: [loose] }] }))
  t.same(Object.fromEntries((tags.Tags ?? []).map((x) => [x.Key, x.Value])), { Branch: 'stage', 'app:name': 'web api' })

  await asg.send(new CreateLaunchConfigurationCommand({ LaunchConfigurationName: `lc-${asgName}`, ImageId: imageId, InstanceType: 't3.micro' }))
  await asg.send(new CreateAutoScalingGroupCommand({
    AutoScalingGroupName: asgName,
    LaunchConfigurationName: `lc-${asgName}`,
    MinSize: 1,
    MaxSize: 1,
    DesiredCapacity: 1,
    AvailabilityZones: ['us-east-1a'],
  }))
  await asg.send(new PutLifecycleHookCommand({
    AutoScalingGroupName: asgName,
    LifecycleHookName: hookName,
    LifecycleTransition: 'autoscaling:EC2_INSTANCE_LAUNCHING',
    HeartbeatTimeout: 600,
    DefaultResult: 'ABANDON',
  }))
  const members = await asg.send(new DescribeAutoScalingInstancesCommand({}))
  const mine = (members.AutoScalingInstances ?? []).filter((i) => i.AutoScalingGroupName === asgName)
  t.equal(mine.length, 1)
  instanceId = mine[0]?.InstanceId ?? ''
  t.match(instanceId, /^i-[0-9a-f]+$/)
  t.comment(`moto lifecycle state of a new member: ${mine[0]?.LifecycleState}`)

  const hooks = await asg.send(new DescribeLifecycleHooksCommand({ AutoScalingGroupName: asgName }))
  t.match(hooks.LifecycleHooks, [{ LifecycleHookName: hookName, LifecycleTransition: 'autoscaling:EC2_INSTANCE_LAUNCHING', DefaultResult: 'ABANDON' }])
})

t.test('moto itself lacks the lifecycle actions (why the proxy exists)', async (t) => {
  const direct = new AutoScalingClient({ ...aws(moto.endpoint), maxAttempts: 1 })
  const e = await rejected(() => direct.send(new CompleteLifecycleActionCommand({ AutoScalingGroupName: asgName, LifecycleHookName: hookName, InstanceId: instanceId, LifecycleActionResult: 'CONTINUE' })))
  const { message, metadata } = withMetadata(e)
  t.comment(`moto CompleteLifecycleAction: ${message.slice(0, 120)}`)
  t.match(metadata, { httpStatusCode: 500 })
  const beat = await rejected(() => direct.send(new RecordLifecycleActionHeartbeatCommand({ AutoScalingGroupName: asgName, LifecycleHookName: hookName, InstanceId: instanceId })))
  t.match(withMetadata(beat).metadata, { httpStatusCode: 500 })
})

t.test('lifecycle proxy: heartbeat and completion of an active action, then none', async (t) => {
  proxy.setActive([{ instanceId, hookName }])
  const ids = { AutoScalingGroupName: asgName, LifecycleHookName: hookName, InstanceId: instanceId }
  await asg.send(new RecordLifecycleActionHeartbeatCommand(ids))
  await asg.send(new RecordLifecycleActionHeartbeatCommand(ids))
  await asg.send(new CompleteLifecycleActionCommand({ ...ids, LifecycleActionResult: 'CONTINUE' }))
  t.same(proxy.heartbeats().map((c) => c.instanceId), [instanceId, instanceId])
  t.match(proxy.completions(), [{ action: 'CompleteLifecycleAction', instanceId, hookName, asgName, result: 'CONTINUE', status: 200 }])

  const again = shape(await rejected(() => asg.send(new CompleteLifecycleActionCommand({ ...ids, LifecycleActionResult: 'CONTINUE' }))))
  t.comment(`no active lifecycle action: ${JSON.stringify(again)}`)
  t.equal(again.name, 'ValidationError')
  t.equal(again.message, `No active Lifecycle Action found with instance ID ${instanceId}`)
  t.equal(again.status, 400)
  t.equal(again.attempts, 1, 'a ValidationError is not retried')

  const beat = shape(await rejected(() => asg.send(new RecordLifecycleActionHeartbeatCommand({ ...ids, InstanceId: 'i-0000000000000dead' }))))
  t.equal(beat.message, 'No active Lifecycle Action found with instance ID i-0000000000000dead')

  const byToken = shape(await rejected(() => asg.send(new CompleteLifecycleActionCommand({ AutoScalingGroupName: asgName, LifecycleHookName: hookName, LifecycleActionToken: 'tok-1', LifecycleActionResult: 'ABANDON' }))))
  t.equal(byToken.message, 'No active Lifecycle Action found with token tok-1')
  t.equal(proxy.completions().length, 1, 'rejected calls are not completions')
})

t.test('lifecycle proxy: injected throttling, retried by the SDK and surfaced without retries', async (t) => {
  proxy.setActive([{ instanceId, hookName }])
  const ids = { AutoScalingGroupName: asgName, LifecycleHookName: hookName, InstanceId: instanceId }
  const before = proxy.calls.length
  proxy.failNext('RecordLifecycleActionHeartbeat', 400, 'Throttling', 1)
  await asg.send(new RecordLifecycleActionHeartbeatCommand(ids))
  t.same(proxy.calls.slice(before).map((c) => c.status), [400, 200], 'one throttled attempt, then the retry')

  const once = new AutoScalingClient({ ...aws(proxy.endpoint), maxAttempts: 1 })
  proxy.failNext('CompleteLifecycleAction', 400, 'Throttling', 1)
  const throttled = shape(await rejected(() => once.send(new CompleteLifecycleActionCommand({ ...ids, LifecycleActionResult: 'CONTINUE' }))))
  t.comment(`throttled (query protocol): ${JSON.stringify(throttled)}`)
  t.same({ name: throttled.name, message: throttled.message, status: throttled.status }, { name: 'Throttling', message: 'Rate exceeded', status: 400 })
  t.equal(proxy.completions().length, 1, 'the throttled completion did not complete')

  // the proxy forwards any service: a JSON-protocol action can be throttled too
  const viaProxy = new SecretsManagerClient({ ...aws(proxy.endpoint), maxAttempts: 1 })
  proxy.failNext('GetSecretValue', 400, 'ThrottlingException', 1)
  const json = shape(await rejected(() => viaProxy.send(new GetSecretValueCommand({ SecretId: 'app/test/API_KEY' }))))
  t.comment(`throttled (JSON protocol): ${JSON.stringify(json)}`)
  t.same({ name: json.name, message: json.message, status: json.status }, { name: 'ThrottlingException', message: 'Rate exceeded', status: 400 })
  const forwarded = await viaProxy.send(new GetSecretValueCommand({ SecretId: 'app/test/API_KEY' }))
  t.match(forwarded.SecretString, /^api-/, 'then forwarded to moto')
})

t.test('the recorder lists the actions called, by service', async (t) => {
  await moto.stopRecording()
  const actions = await moto.recordedActions()
  const seen = [...new Set(actions.map((a) => `${a.service}:${a.action}`))]
  t.same(seen, [
    'secretsmanager:CreateSecret',
    'secretsmanager:BatchGetSecretValue',
    'secretsmanager:GetSecretValue',
    'ssm:PutParameter',
    'ssm:GetParametersByPath',
    'ssm:DescribeParameters',
    'ec2:DescribeImages',
    'ec2:RunInstances',
    'ec2:CreateTags',
    'ec2:DescribeTags',
    'autoscaling:CreateLaunchConfiguration',
    'autoscaling:CreateAutoScalingGroup',
    'autoscaling:PutLifecycleHook',
    'autoscaling:DescribeAutoScalingInstances',
    'autoscaling:DescribeLifecycleHooks',
    // the two calls made to moto directly; through the proxy these never reach moto
    'autoscaling:CompleteLifecycleAction',
    'autoscaling:RecordLifecycleActionHeartbeat',
  ])
  t.match(actions.find((a) => a.action === 'DescribeTags')?.body, /Filter\.1\.Name=resource-id/)

  await moto.reset()
  const after = await rejected(() => secrets.send(new GetSecretValueCommand({ SecretId: 'app/test/API_KEY' })))
  t.equal(shape(after).name, 'ResourceNotFoundException', 'reset forgot the secrets')
  t.same(await moto.recordedActions(), actions, 'nothing recorded after stopRecording')
})

t.test('IMDSv2 server with the SDK MetadataService', async (t) => {
  const imds = await startImdsServer({
    instanceId: 'i-0123456789abcdef0',
    region: 'eu-west-3',
    az: 'eu-west-3b',
    tags: { Branch: 'stage', 'app:name': 'web api', Empty: '' },
  })
  t.teardown(() => imds.stop())
  // ec2MetadataV1Disabled: without it a failed token PUT falls back to a token-less GET
  const md = new MetadataService({ endpoint: imds.endpoint, httpOptions: { timeout: 1000 }, ec2MetadataV1Disabled: true, retries: 0 })
  const get = (path: string) => md.request(`/latest/meta-data/${path}`, {})

  t.equal(await get('instance-id'), 'i-0123456789abcdef0')
  t.equal(await get('placement/region'), 'eu-west-3')
  t.equal(await get('placement/availability-zone'), 'eu-west-3b')
  t.equal(await get('tags/instance'), 'Branch\napp:name\nEmpty')
  t.equal(await get('tags/instance/app:name'), 'web api')
  t.equal(await get(`tags/instance/${encodeURIComponent('app:name')}`), 'web api')
  t.equal(await get('tags/instance/Empty'), '')
  t.same(imds.requests.filter((r) => r.method === 'PUT').length, 7, 'the SDK fetches a token for every request')
  t.comment(`path as sent by the SDK: ${imds.requests.find((r) => r.method === 'GET')?.path}`)

  const status = async (p: Promise<unknown>) => withMetadata(await rejected(() => p))
  const notFound = await status(get('spot/instance-action'))
  t.same(notFound.metadata, { httpStatusCode: 404 })
  t.match(notFound.message, /status code 404/)
  imds.set({ lifecycleState: 'InService', spotAction: { action: 'terminate', time: '2030-01-01T00:00:00Z' }, tags: 'disabled' })
  t.equal(await get('autoscaling/target-lifecycle-state'), 'InService')
  t.same(JSON.parse(await get('spot/instance-action')), { action: 'terminate', time: '2030-01-01T00:00:00Z' })
  t.same((await status(get('tags/instance'))).metadata, { httpStatusCode: 404 }, 'tags off: 404')
  t.same((await status(get('iam/security-credentials/'))).metadata, { httpStatusCode: 404 })
  t.equal(imds.tokenlessRequests, 0, 'the SDK never tried IMDSv1')

  const v1 = await fetch(`${imds.endpoint}/latest/meta-data/instance-id`)
  t.equal(v1.status, 401)
  t.equal(imds.tokenlessRequests, 1)
  const forged = await fetch(`${imds.endpoint}/latest/meta-data/instance-id`, { headers: { 'X-aws-ec2-metadata-token': 'forged' } })
  t.equal(forged.status, 401, 'an unknown token is refused too')
  t.equal(imds.tokenlessRequests, 1, 'but it is not a token-less request')
  for (const ttl of [undefined, '0', '21601']) {
    const res = await fetch(`${imds.endpoint}/latest/api/token`, { method: 'PUT', headers: ttl === undefined ? {} : { 'X-aws-ec2-metadata-token-ttl-seconds': ttl } })
    t.equal(res.status, 400, `token TTL ${ttl ?? 'missing'} is refused`)
  }

  imds.set({ stallMs: 1500 })
  const stalled = await rejected(() => new MetadataService({ endpoint: imds.endpoint, httpOptions: { timeout: 200 }, ec2MetadataV1Disabled: true, retries: 0 }).request('/latest/meta-data/instance-id', {}))
  t.match(String(stalled), /timeout|timed out/i)
})
