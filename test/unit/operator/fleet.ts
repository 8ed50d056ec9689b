/**
 * fleet against fakes of our narrow interfaces (EC2, Auto Scaling, CloudWatch Logs): instances in
 * every state but terminated, Auto Scaling's view in batches of 50, the newest run report of each
 * stream (drain reports skipped, paging back), what each serves and the drift.
 */
import t from 'tap'
import type { GetLogEventsCommandInput, OutputLogEvent } from '@aws-sdk/client-cloudwatch-logs'
import type { DescribeInstancesRequest, Instance } from '@aws-sdk/client-ec2'
import type { LogsReaderApi } from '../../../agent/src/aws/cloudwatch-logs.js'
import { fleetView, lastRun, type FleetDeps } from '../../../agent/src/operator/fleet.js'
import { REPORT_SCHEMA, type Report } from '../../../agent/src/reports/report.js'

const sdkError = (name: string, status = 400, message = `${name} happened`) =>
  Object.assign(new Error(message), { name, $fault: status >= 500 ? 'server' : 'client', $metadata: { httpStatusCode: status } })

const run = (instanceId: string, runId: string, at: string, outcome: string, commit: string, serving?: string): Report => ({
  schema: REPORT_SCHEMA, version: 1, kind: 'run', agentVersion: '0.1.0', instanceId, at,
  run: { version: 1, runId, command: 'run', reason: 'ssm', mode: 'aws', pid: 1, startedAt: at, finishedAt: at, outcome: outcome as 'success', commit, phases: [] },
  ...(serving ? { serving: { release: `20260101T000000Z-${serving.slice(0, 12)}`, commit: serving } } : {}),
  evidence: [],
})
const drain = (instanceId: string, at: string): Report => ({
  schema: REPORT_SCHEMA, version: 1, kind: 'drain', agentVersion: '0.1.0', instanceId, at,
  drain: { reason: 'spot-interruption', trigger: 'x', startedAt: at, outcome: 'ok', steps: [] }, evidence: [],
})

const A = 'a'.repeat(40)
const B = 'b'.repeat(40)
/** streams, oldest event first, as CloudWatch keeps them */
const fake = (streams: Record<string, Report[]>, instances: Instance[], o: { failStream?: string } = {}) => {
  const gets: GetLogEventsCommandInput[] = []
  const ec2Calls: DescribeInstancesRequest[] = []
  const asgCalls: string[][] = []
  const logs: LogsReaderApi = {
    async filterLogEvents() { throw new Error('not used') },
    async getLogEvents(input) {
      gets.push(input)
      if (input.logStreamName === o.failStream) throw sdkError('AccessDeniedException', 400, 'not authorized to perform: logs:GetLogEvents')
      const events = streams[input.logStreamName ?? '']
      if (!events) throw sdkError('ResourceNotFoundException', 400, 'The specified log stream does not exist.')
      // newest `limit` before the token (an index), as startFromHead=false reads
      const end = input.nextToken === undefined ? events.length : Number(input.nextToken.slice(2))
      const start = Math.max(0, end - (input.limit ?? 10))
      const page: OutputLogEvent[] = events.slice(start, end).map(r => ({ message: JSON.stringify(r), timestamp: Date.parse(r.at) }))
      return { $metadata: {}, events: page, nextBackwardToken: `b/${start}`, nextForwardToken: `f/${end}` }
    },
  }
  const deps: FleetDeps = {
    ec2: {
      async describeInstances(input) {
        ec2Calls.push(input)
        return { Reservations: [{ Instances: instances }] }
      },
    },
    autoscaling: {
      async describeAutoScalingInstances(input) {
        asgCalls.push(input.InstanceIds ?? [])
        return { AutoScalingInstances: (input.InstanceIds ?? []).filter(id => id !== 'i-loose').map(id => ({ InstanceId: id, AutoScalingGroupName: 'api-prod', LifecycleState: 'InService', HealthStatus: id === 'i-3' ? 'Unhealthy' : 'Healthy', AvailabilityZone: 'x', ProtectedFromScaleIn: false })) }
      },
    },
    logs,
    retry: { baseMs: 1, capMs: 2 },
    now: () => Date.parse('2026-01-10T00:00:00Z'),
  }
  return { deps, gets, ec2Calls, asgCalls }
}
const q = { service: 'api', environment: 'prod', tagKeys: { service: 'Service', environment: 'Environment' }, group: '/bootstrap-agent/prod/api', region: 'eu-west-1' }

t.test('the instances now, each with its last run and what it serves; drift', async t => {
  const old = Array.from({ length: 12 }, (_, i) => run('i-2', `old-${i}`, `2026-01-0${1 + (i % 5)}T00:00:00.000Z`, 'success', A, A))
  const f = fake({
    'i-1': [run('i-1', 'r1', '2026-01-08T00:00:00.000Z', 'success', A, A), run('i-1', 'r2', '2026-01-09T00:00:00.000Z', 'rolled-back', B, A)],
    // the newest run is behind 10 drain reports: one page back
    'i-2': [...old, run('i-2', 'r3', '2026-01-09T12:00:00.000Z', 'success', B, B), ...Array.from({ length: 10 }, () => drain('i-2', '2026-01-09T13:00:00.000Z'))],
  }, [
    { InstanceId: 'i-2', State: { Name: 'running' } },
    { InstanceId: 'i-1', State: { Name: 'running' } },
    { InstanceId: 'i-3', State: { Name: 'stopped' } },
    { InstanceId: 'i-loose', State: { Name: 'pending' } },
  ])
  const v = await fleetView(f.deps, q)
  t.same(f.ec2Calls[0]?.Filters, [
    { Name: 'tag:Service', Values: ['api'] }, { Name: 'tag:Environment', Values: ['prod'] },
    { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped', 'shutting-down'] },
  ], 'every state but terminated (a warm pool is stopped)')
  t.same(f.asgCalls, [['i-1', 'i-2', 'i-3', 'i-loose']])
  t.match(v.instances, [
    { instanceId: 'i-1', state: 'running', group: 'api-prod', lifecycleState: 'InService', health: 'Healthy', lastRun: { runId: 'r2', outcome: 'rolled-back', commit: B, serving: { commit: A }, ageMs: 86_400_000 } },
    { instanceId: 'i-2', lastRun: { runId: 'r3', outcome: 'success', serving: { commit: B } } },
    { instanceId: 'i-3', state: 'stopped', health: 'Unhealthy', note: 'no run report' },
    { instanceId: 'i-loose', state: 'pending', note: 'no run report' },
  ])
  t.equal(v.instances[3]?.group, undefined, 'not in a group')
  t.same(v.serving, [
    { commit: 'unknown', instances: ['i-3', 'i-loose'] },
    { commit: A.slice(0, 12), instances: ['i-1'] },
    { commit: B.slice(0, 12), instances: ['i-2'] },
  ])
  t.same(f.gets.filter(g => g.logStreamName === 'i-2').map(g => [g.startFromHead, g.limit, g.nextToken]), [[false, 10, undefined], [false, 10, 'b/13']], 'newest first, then one page back')
})

t.test('a stream that cannot be read is noted on its row; the rest of the fleet shows', async t => {
  const f = fake({ 'i-1': [run('i-1', 'r1', '2026-01-08T00:00:00.000Z', 'success', A, A)] }, [{ InstanceId: 'i-1', State: { Name: 'running' } }, { InstanceId: 'i-2', State: { Name: 'running' } }], { failStream: 'i-2' })
  const v = await fleetView(f.deps, q)
  t.match(v.instances, [{ instanceId: 'i-1', lastRun: { runId: 'r1' } }, { instanceId: 'i-2', note: /^run report not read: AWS logs:GetLogEvents on .* failed: AccessDeniedException/ }])
})

t.test('a missing group is an error, not a fleet without reports', async t => {
  const f = fake({}, [{ InstanceId: 'i-1', State: { Name: 'running' } }])
  f.deps.logs.getLogEvents = async () => { throw sdkError('ResourceNotFoundException', 400, 'The specified log group does not exist.') }
  t.match(await fleetView(f.deps, q).catch((e: unknown) => e), { code: 'REPORT_GROUP_MISSING', message: /\/bootstrap-agent\/prod\/api does not exist in eu-west-1/ })
})

t.test('a stream of drains only: no run report (paging back stops at its start)', async t => {
  const f = fake({ 'i-1': [drain('i-1', '2026-01-01T00:00:00.000Z')] }, [])
  t.same(await lastRun(f.deps, q, 'i-1'), { note: 'no run report' })
  t.ok(f.gets.length <= 2)
})
