/**
 * Test fixture: the AWS side of an instance's world, as the agent meets it in AWS mode. A moto
 * server behind the lifecycle proxy (which answers the two lifecycle actions moto lacks), SDK
 * clients that seed moto directly (seeding is not the agent's traffic, so it never shows in the
 * proxy's log), Auto Scaling groups whose members are the simulated instances, an IMDSv2 server
 * per instance, and the environment systemd would start the agent with, every endpoint pointed at
 * these fixtures. Each server is stopped in teardown (registered as soon as it started), even
 * when a test fails.
 */
import { randomBytes } from 'node:crypto'
import {
  AutoScalingClient, CreateAutoScalingGroupCommand, CreateLaunchConfigurationCommand, DescribeAutoScalingGroupsCommand, PutLifecycleHookCommand,
} from '@aws-sdk/client-auto-scaling'
import { CloudWatchLogsClient, CreateLogGroupCommand, FilterLogEventsCommand, PutRetentionPolicyCommand, type FilteredLogEvent } from '@aws-sdk/client-cloudwatch-logs'
import { DescribeImagesCommand, EC2Client } from '@aws-sdk/client-ec2'
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3'
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager'
import { SSMClient } from '@aws-sdk/client-ssm'
import { startImdsServer, type ImdsServer, type ImdsState } from './imds-server.js'
import { startLifecycleProxy, type LifecycleProxy } from './lifecycle-proxy.js'
import { startMoto, type Moto } from './moto.js'

/** What registers the stops: a tap Test, or any list of stops run at the end. */
export interface Teardown {
  teardown(fn: () => unknown): void
}

export interface HookSpec {
  name: string
  /** default autoscaling:EC2_INSTANCE_LAUNCHING */
  transition?: 'autoscaling:EC2_INSTANCE_LAUNCHING' | 'autoscaling:EC2_INSTANCE_TERMINATING'
  /** what Auto Scaling does at the timeout; default ABANDON */
  defaultResult?: 'ABANDON' | 'CONTINUE'
  /** seconds, default 60: the agent derives its heartbeat interval and completion deadline from it */
  heartbeatTimeout?: number
}

export interface GroupSpec {
  hooks: HookSpec[]
  /** members, all launched at once (default 1) */
  size?: number
  /** the group's name is this plus a random suffix, so groups in one moto never collide (default `asg`) */
  prefix?: string
}

export interface Group {
  asgName: string
  /** the first member: with the default size, the only one */
  instanceId: string
  instanceIds: string[]
}

export interface AwsWorld {
  moto: Moto
  /** in front of moto: the agent's AWS endpoint */
  proxy: LifecycleProxy
  /** clients of moto itself, for seeding and for changing the world between cases */
  sm: SecretsManagerClient
  ssm: SSMClient
  ec2: EC2Client
  logs: CloudWatchLogsClient
  /** a CloudWatch Logs group, as the README's setup creates it (with a retention policy) */
  createLogGroup(name: string): Promise<void>
  /** every event moto holds in a log group, all streams, every page */
  logEvents(group: string): Promise<FilteredLogEvent[]>
  /** moto's S3, path-style (the release cache) */
  s3: S3Client
  /** a bucket in moto's S3 */
  createBucket(name: string): Promise<void>
  /** a group launched from moto's first AMI, with its lifecycle hooks; moto puts its members InService */
  createGroup(spec: GroupSpec): Promise<Group>
  /** an IMDSv2 server for one instance, in the region and AZ of the groups (us-east-1, us-east-1a) */
  startImds(state: Omit<ImdsState, 'region' | 'az'>): Promise<ImdsServer>
  /**
   * The agent's environment as systemd sets it on the instance: region, dummy credentials, every
   * AWS API through the lifecycle proxy, instance metadata from `imdsEndpoint` (none when
   * undefined). `extra` adds or overrides (BOOTSTRAP_* settings, AWS_ENDPOINT_URL_<SERVICE>).
   */
  agentEnv(imdsEndpoint: string | undefined, extra?: Record<string, string>): Record<string, string>
}

const REGION = 'us-east-1'
const CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' }

export const startAwsWorld = async (t: Teardown): Promise<AwsWorld> => {
  const moto = await startMoto()
  t.teardown(() => moto.stop())
  const proxy = await startLifecycleProxy(moto.endpoint)
  t.teardown(() => proxy.stop())

  // the seeding clients run on this Node too; the agent silences the same notice for itself
  process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true'
  const aws = { region: REGION, endpoint: moto.endpoint, credentials: CREDENTIALS }
  const sm = new SecretsManagerClient(aws)
  const ssm = new SSMClient(aws)
  const ec2 = new EC2Client(aws)
  const asg = new AutoScalingClient(aws)
  const logs = new CloudWatchLogsClient(aws)
  const s3 = new S3Client({ ...aws, forcePathStyle: true })
  t.teardown(() => {
    for (const c of [sm, ssm, ec2, asg, logs, s3]) c.destroy()
  })
  const createLogGroup = async (name: string) => {
    await logs.send(new CreateLogGroupCommand({ logGroupName: name }))
    await logs.send(new PutRetentionPolicyCommand({ logGroupName: name, retentionInDays: 30 }))
  }
  const logEvents = async (group: string): Promise<FilteredLogEvent[]> => {
    const out: FilteredLogEvent[] = []
    let nextToken: string | undefined
    do {
      const page = await logs.send(new FilterLogEventsCommand({ logGroupName: group, ...(nextToken ? { nextToken } : {}) }))
      out.push(...(page.events ?? []))
      nextToken = page.nextToken
    } while (nextToken)
    return out
  }
  const createBucket = async (name: string) => void (await s3.send(new CreateBucketCommand({ Bucket: name })))
  const az = `${REGION}a`

  let imageId: string | undefined
  const createGroup = async ({ hooks, size = 1, prefix = 'asg' }: GroupSpec): Promise<Group> => {
    imageId ??= (await ec2.send(new DescribeImagesCommand({}))).Images?.[0]?.ImageId
    if (!imageId) throw new Error('moto offered no AMI (DescribeImages is empty): the moto server under .cache/moto-venv may be broken; rerun scripts/test-setup.mjs')
    const asgName = `${prefix}-${randomBytes(6).toString('hex')}`
    await asg.send(new CreateLaunchConfigurationCommand({ LaunchConfigurationName: `lc-${asgName}`, ImageId: imageId, InstanceType: 't3.micro' }))
    await asg.send(new CreateAutoScalingGroupCommand({
      AutoScalingGroupName: asgName, LaunchConfigurationName: `lc-${asgName}`, MinSize: size, MaxSize: size, DesiredCapacity: size, AvailabilityZones: [az],
    }))
    for (const h of hooks) {
      await asg.send(new PutLifecycleHookCommand({
        AutoScalingGroupName: asgName,
        LifecycleHookName: h.name,
        LifecycleTransition: h.transition ?? 'autoscaling:EC2_INSTANCE_LAUNCHING',
        HeartbeatTimeout: h.heartbeatTimeout ?? 60,
        DefaultResult: h.defaultResult ?? 'ABANDON',
      }))
    }
    const members = (await asg.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [asgName] }))).AutoScalingGroups?.[0]?.Instances ?? []
    const instanceIds = members.flatMap(m => (m.InstanceId ? [m.InstanceId] : []))
    const [instanceId] = instanceIds
    if (instanceId === undefined || instanceIds.length !== size) throw new Error(`moto launched ${instanceIds.length} instances in ${asgName}, expected ${size}`)
    return { asgName, instanceId, instanceIds }
  }

  const startImds = async (state: Omit<ImdsState, 'region' | 'az'>): Promise<ImdsServer> => {
    const imds = await startImdsServer({ ...state, region: REGION, az })
    t.teardown(() => imds.stop())
    return imds
  }

  const agentEnv = (imdsEndpoint: string | undefined, extra: Record<string, string> = {}): Record<string, string> => ({
    AWS_REGION: REGION,
    AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
    AWS_ENDPOINT_URL: proxy.endpoint,
    ...(imdsEndpoint === undefined ? {} : { AWS_EC2_METADATA_SERVICE_ENDPOINT: imdsEndpoint }),
    ...extra,
  })

  return { moto, proxy, sm, ssm, ec2, logs, createLogGroup, logEvents, s3, createBucket, createGroup, startImds, agentEnv }
}
