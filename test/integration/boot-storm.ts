/**
 * The boot storm, small enough for every `npm test` (test/storm/boot-storm.ts is the 200-instance
 * run): 20 instances booting at once behind rates scaled down so that the throttling path is
 * taken for real: the throttle proxy's AWS error documents, parsed by the real SDK, classified
 * and retried by the agent's own retry code, until every instance has its secrets and its one
 * CONTINUE. No timing is asserted.
 */
import t from 'tap'
import { AutoScalingClient, DescribeAutoScalingInstancesCommand } from '@aws-sdk/client-auto-scaling'
import { DescribeTagsCommand, EC2Client } from '@aws-sdk/client-ec2'
import { BatchGetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager'
import { GetParametersByPathCommand, SSMClient } from '@aws-sdk/client-ssm'
import { classifyAwsError } from '../../agent/src/aws/retry.js'
import { startThrottleProxy, type BucketSpec } from '../helpers/throttle-proxy.js'
import { rejected } from '../helpers/thrown.js'
import { startFleet } from '../storm/fleet.js'
import { formatReport, stormReport, throttledOf, throttlingRetries } from '../storm/report.js'

const AUTOSCALING = ['autoscaling:DescribeAutoScalingInstances', 'autoscaling:DescribeLifecycleHooks', 'autoscaling:CompleteLifecycleAction', 'autoscaling:RecordLifecycleActionHeartbeat']

/** AWS's buckets (test/storm/aws-rates.ts) shrunk to a 20-instance fleet, so that they run dry. */
const SMALL_RATES: BucketSpec[] = [
  { actions: ['ssm:GetParameter', 'ssm:GetParameters', 'ssm:GetParametersByPath'], perSecond: 10, burst: 2 },
  { actions: ['secretsmanager:BatchGetSecretValue'], perSecond: 8, burst: 1 },
  { actions: ['ec2:DescribeTags'], perSecond: 4, burst: 1 },
  { actions: AUTOSCALING, perSecond: 16, burst: 2 },
]

t.test('throttled answers are AWS\'s own error documents: the SDK and the agent read them as throttling', async t => {
  // an empty bucket for every action: nothing reaches the target
  const proxy = await startThrottleProxy('http://127.0.0.1:9', [{ actions: ['ssm:GetParametersByPath', 'secretsmanager:BatchGetSecretValue', 'ec2:DescribeTags', ...AUTOSCALING], perSecond: 0, burst: 0 }])
  t.teardown(() => proxy.stop())
  process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true'
  const aws = { region: 'us-east-1', endpoint: proxy.endpoint, credentials: { accessKeyId: 'test', secretAccessKey: 'test' }, maxAttempts: 1 }
  const cases: [string, () => Promise<unknown>, string, number][] = [
    ['SSM (JSON)', () => new SSMClient(aws).send(new GetParametersByPathCommand({ Path: '/stage/app/' })), 'ThrottlingException', 400],
    ['Secrets Manager (JSON)', () => new SecretsManagerClient(aws).send(new BatchGetSecretValueCommand({ SecretIdList: ['stage/app'] })), 'ThrottlingException', 400],
    ['Auto Scaling (query)', () => new AutoScalingClient(aws).send(new DescribeAutoScalingInstancesCommand({ InstanceIds: ['i-0123456789abcdef0'] })), 'Throttling', 400],
    ['EC2', () => new EC2Client(aws).send(new DescribeTagsCommand({})), 'RequestLimitExceeded', 503],
  ]
  for (const [what, call, code, status] of cases) {
    const info = classifyAwsError(await rejected(call))
    t.same({ kind: info.kind, code: info.code, status: info.status, retryable: info.retryable }, { kind: 'throttled', code, status, retryable: true }, what)
  }
  t.same(Object.values(proxy.counts()).map(c => c.passed), [0, 0, 0, 0], 'nothing passed an empty bucket')
  t.equal(proxy.throttled(), 4, 'four throttled answers counted')
})

t.test('20 instances boot at once against scaled-down AWS rates: all succeed after throttling', async t => {
  const fleet = await startFleet({ instances: 20, perService: 10, rates: SMALL_RATES })
  t.teardown(() => fleet.stop())
  const run = await fleet.run()
  const report = stormReport(run, SMALL_RATES, 'npx tap test/integration/boot-storm.ts')
  t.comment(`\n${formatReport(report)}`)

  t.same(report.failures, [], 'every instance identified, resolved and read its secrets')
  t.equal(run.results.filter(i => i.secretsRight).length, 20, 'each has exactly its service\'s secrets and parameters (a shared secret, two pages of parameters)')
  const answers = run.results.map(i => (run.completions.get(i.instanceId) ?? []).join())
  t.same([...new Set(answers)], ['CONTINUE'], 'each waiting instance got exactly one CONTINUE')
  t.same(run.results.flatMap(i => i.leaks), [], 'no secret value in any log line')

  // which buckets run dry depends on how the arrivals bunch up; that some do does not (each
  // family's error document is checked above, deterministically)
  const families = ['ssm:', 'secretsmanager:', 'ec2:', 'autoscaling:'].map(f => `${f} ${throttledOf(run.counts, f)}`).join(', ')
  t.ok(throttledOf(run.counts) > 0, `requests were throttled (${families})`)
  // every throttled answer was followed by a retry the agent logged (DescribeTags' included)
  t.equal(throttlingRetries(report), throttledOf(run.counts), 'one logged retry per throttled answer')
})
