import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import pino from 'pino'
import t from 'tap'
import type { CompleteLifecycleActionType, LifecycleHook as AsgHook, RecordLifecycleActionHeartbeatType } from '@aws-sdk/client-auto-scaling'
import { completionBudgetMs, createAwsLifecycleHook, heartbeatInterval, LAUNCHING, type AutoScalingApi } from '../../../agent/src/aws/lifecycle-hook.js'
import { isAgentError } from '../../../agent/src/core/errors.js'
import { rejected } from '../../helpers/thrown.js'

const INSTANCE = 'i-0123456789abcdef0'

const sdkError = (name: string, status = 400, message = `${name} happened`) =>
  Object.assign(new Error(message), { name, $fault: status >= 500 ? 'server' : 'client', $metadata: { httpStatusCode: status } })

const capture = () => {
  const lines: Record<string, unknown>[] = []
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>)
      done()
    },
  })
  return { log: pino({ level: 'debug' }, stream), lines }
}

interface FakeAsg {
  /** undefined: not in a group */
  group?: { name: string; state: string }
  hooks?: AsgHook[]
  /** pairs "group/hook" whose lifecycle action is active */
  active: Set<string>
  /** errors thrown by the next CompleteLifecycleAction calls, in order */
  completeErrors?: Error[]
  /** calls of DescribeAutoScalingInstances that answer "not listed" before the instance shows up */
  unlistedFor?: number
}

const fakeAsg = (f: FakeAsg) => {
  const calls: { action: string; input: unknown }[] = []
  const noActive = () => sdkError('ValidationError', 400, `No active Lifecycle Action found with instance ID ${INSTANCE}`)
  const api: AutoScalingApi = {
    async describeAutoScalingInstances(input) {
      calls.push({ action: 'DescribeAutoScalingInstances', input })
      if (!f.group || (f.unlistedFor !== undefined && f.unlistedFor-- > 0)) return { AutoScalingInstances: [] }
      return { AutoScalingInstances: [{ InstanceId: INSTANCE, AutoScalingGroupName: f.group.name, LifecycleState: f.group.state, AvailabilityZone: 'eu-west-1a', HealthStatus: 'HEALTHY', ProtectedFromScaleIn: false }] }
    },
    async describeLifecycleHooks(input) {
      calls.push({ action: 'DescribeLifecycleHooks', input })
      return { LifecycleHooks: f.hooks ?? [] }
    },
    async recordLifecycleActionHeartbeat(input: RecordLifecycleActionHeartbeatType) {
      calls.push({ action: 'RecordLifecycleActionHeartbeat', input })
      if (!f.active.has(`${input.AutoScalingGroupName}/${input.LifecycleHookName}`)) throw noActive()
      return {}
    },
    async completeLifecycleAction(input: CompleteLifecycleActionType) {
      calls.push({ action: 'CompleteLifecycleAction', input })
      const e = f.completeErrors?.shift()
      if (e) throw e
      const key = `${input.AutoScalingGroupName}/${input.LifecycleHookName}`
      if (!f.active.delete(key)) throw noActive()
      return {}
    },
  }
  const actions = () => calls.map(c => c.action)
  return { api, calls, actions, active: f.active }
}

const launching = (name: string, heartbeat = 300): AsgHook => ({ LifecycleHookName: name, AutoScalingGroupName: 'web', LifecycleTransition: LAUNCHING, HeartbeatTimeout: heartbeat, DefaultResult: 'ABANDON' })
const terminating = (name: string): AsgHook => ({ LifecycleHookName: name, AutoScalingGroupName: 'web', LifecycleTransition: 'autoscaling:EC2_INSTANCE_TERMINATING', HeartbeatTimeout: 300 })

const quick = { baseMs: 1, capMs: 5, totalMs: 300 }

t.test('not in an Auto Scaling group: not-applicable, nothing completed', async t => {
  const { log } = capture()
  const asg = fakeAsg({ active: new Set() })
  const hook = createAwsLifecycleHook({ instanceId: INSTANCE, region: 'eu-west-1', log, api: asg.api, retry: quick })
  t.match(hook.description, /not discovered yet/)
  await hook.begin()
  t.equal(await hook.complete('CONTINUE'), 'not-applicable')
  t.equal(hook.description, `none (${INSTANCE} is not in an Auto Scaling group)`)
  t.same(asg.actions(), ['DescribeAutoScalingInstances'])
})

t.test('InService (a manual or SSM run): not-applicable without completing', async t => {
  const { log } = capture()
  const asg = fakeAsg({ group: { name: 'web', state: 'InService' }, hooks: [launching('launch')], active: new Set() })
  const hook = createAwsLifecycleHook({ instanceId: INSTANCE, region: 'eu-west-1', lifecycleState: 'InService', log, api: asg.api, retry: quick, heartbeatMs: 5 })
  await hook.begin()
  await sleep(30)
  t.equal(await hook.complete('CONTINUE'), 'not-applicable')
  t.equal(hook.description, 'asg web, nothing to complete (InService)')
  t.same(asg.actions(), ['DescribeAutoScalingInstances'], 'no heartbeat, no hook lookup, no completion')
})

t.test('Pending:Wait: heartbeats, then exactly one CompleteLifecycleAction however often complete() is called', async t => {
  const { log, lines } = capture()
  const asg = fakeAsg({ group: { name: 'web', state: 'Pending:Wait' }, hooks: [terminating('drain'), launching('launch')], active: new Set(['web/launch']) })
  const hook = createAwsLifecycleHook({ instanceId: INSTANCE, region: 'eu-west-1', lifecycleState: 'InService', log, api: asg.api, retry: quick, heartbeatMs: 10 })
  await hook.begin()
  await hook.begin()
  t.equal(hook.description, 'asg web, hook launch (Pending:Wait)')
  await sleep(80)
  const beats = asg.calls.filter(c => c.action === 'RecordLifecycleActionHeartbeat')
  t.ok(beats.length >= 2, `heartbeats sent (${beats.length})`)
  t.same(beats[0]?.input, { AutoScalingGroupName: 'web', LifecycleHookName: 'launch', InstanceId: INSTANCE })
  const [a, b] = await Promise.all([hook.complete('CONTINUE'), hook.complete('ABANDON')])
  t.equal(a, 'completed')
  t.equal(b, 'completed', 'the second call gets the first outcome')
  t.equal(await hook.complete('ABANDON'), 'completed')
  const completions = asg.calls.filter(c => c.action === 'CompleteLifecycleAction')
  t.same(completions.map(c => c.input), [{ AutoScalingGroupName: 'web', LifecycleHookName: 'launch', InstanceId: INSTANCE, LifecycleActionResult: 'CONTINUE' }])
  const after = asg.calls.length
  await sleep(40)
  t.equal(asg.calls.length, after, 'no heartbeat after completion')
  t.ok(lines.some(l => l['msg'] === 'lifecycle action completed: CONTINUE'))
})

t.test('complete() without begin() discovers on its own (ABANDON)', async t => {
  const { log } = capture()
  const asg = fakeAsg({ group: { name: 'web', state: 'Warmed:Pending:Wait' }, hooks: [launching('launch')], active: new Set(['web/launch']) })
  const hook = createAwsLifecycleHook({ instanceId: INSTANCE, region: 'eu-west-1', log, api: asg.api, retry: quick })
  t.equal(await hook.complete('ABANDON'), 'completed')
  t.same(asg.actions(), ['DescribeAutoScalingInstances', 'DescribeLifecycleHooks', 'CompleteLifecycleAction'])
  t.match(asg.calls[2]?.input, { LifecycleActionResult: 'ABANDON' })
})

t.test('"No active Lifecycle Action found" is no-active-action, logged, not an error', async t => {
  const { log, lines } = capture()
  const asg = fakeAsg({ group: { name: 'web', state: 'Pending:Wait' }, hooks: [launching('launch')], active: new Set() })
  const hook = createAwsLifecycleHook({ instanceId: INSTANCE, region: 'eu-west-1', log, api: asg.api, retry: quick })
  t.equal(await hook.complete('CONTINUE'), 'no-active-action')
  t.equal(asg.calls.filter(c => c.action === 'CompleteLifecycleAction').length, 1, 'not retried')
  t.ok(lines.some(l => /no active lifecycle action/.test(String(l['msg'])) && l['level'] === 30))
  t.notOk(lines.some(l => Number(l['level']) >= 50), 'nothing logged as an error')
})

t.test('throttled completion is retried within its deadline, still one accepted completion', async t => {
  const { log } = capture()
  const asg = fakeAsg({
    group: { name: 'web', state: 'Pending:Wait' }, hooks: [launching('launch')], active: new Set(['web/launch']),
    completeErrors: [sdkError('Throttling', 400, 'Rate exceeded'), sdkError('ServiceUnavailable', 503)],
  })
  const hook = createAwsLifecycleHook({ instanceId: INSTANCE, region: 'eu-west-1', log, api: asg.api, retry: quick })
  t.equal(await hook.complete('CONTINUE'), 'completed')
  t.equal(asg.calls.filter(c => c.action === 'CompleteLifecycleAction').length, 3)
  t.equal(asg.active.size, 0)
})

t.test('a completion that keeps failing throws AWS_THROTTLED after its deadline; a second call does not retry', async t => {
  const { log } = capture()
  const errors = Array.from({ length: 1000 }, () => sdkError('Throttling', 400, 'Rate exceeded'))
  const asg = fakeAsg({ group: { name: 'web', state: 'Pending:Wait' }, hooks: [launching('launch')], active: new Set(['web/launch']), completeErrors: errors })
  const hook = createAwsLifecycleHook({ instanceId: INSTANCE, region: 'eu-west-1', log, api: asg.api, retry: { baseMs: 1, capMs: 5 }, completeTimeoutMs: 60 })
  const e = await rejected(() => hook.complete('CONTINUE'))
  // with a longer budget the 1,000 failures would run out and the completion succeed
  t.ok(isAgentError(e) && e.code === 'AWS_THROTTLED', 'given up at completeTimeoutMs')
  t.ok(errors.length > 0, `failures left unused (${errors.length})`)
  const n = asg.calls.length
  t.equal(await rejected(() => hook.complete('CONTINUE')), e, 'the same outcome')
  t.equal(asg.calls.length, n, 'no more calls')
})

t.test('heartbeat errors are logged, never fatal', async t => {
  const { log, lines } = capture()
  const asg = fakeAsg({ group: { name: 'web', state: 'Pending:Wait' }, hooks: [launching('launch')], active: new Set(['web/launch']) })
  const api: AutoScalingApi = {
    ...asg.api,
    async recordLifecycleActionHeartbeat() {
      throw sdkError('AccessDenied', 403, 'not authorized to perform autoscaling:RecordLifecycleActionHeartbeat')
    },
  }
  const hook = createAwsLifecycleHook({ instanceId: INSTANCE, region: 'eu-west-1', log, api, retry: quick, heartbeatMs: 10 })
  await hook.begin()
  await sleep(50)
  t.equal(await hook.complete('CONTINUE'), 'completed')
  t.ok(lines.some(l => l['msg'] === 'lifecycle action heartbeat failed' && l['level'] === 40))
})

t.test('several launching hooks: each is completed (or only hookName)', async t => {
  const { log, lines } = capture()
  const asg = fakeAsg({ group: { name: 'web', state: 'Pending:Wait' }, hooks: [launching('a'), launching('b')], active: new Set(['web/a', 'web/b']) })
  const hook = createAwsLifecycleHook({ instanceId: INSTANCE, region: 'eu-west-1', log, api: asg.api, retry: quick })
  t.equal(await hook.discover(), 'asg web, hooks a, b (Pending:Wait)')
  t.equal(await hook.complete('CONTINUE'), 'completed')
  t.same(asg.calls.filter(c => c.action === 'CompleteLifecycleAction').map(c => (c.input as CompleteLifecycleActionType).LifecycleHookName), ['a', 'b'])
  t.ok(lines.some(l => l['level'] === 40 && /several launching lifecycle hooks/.test(String(l['msg']))))

  const only = fakeAsg({ group: { name: 'web', state: 'Pending:Wait' }, hooks: [launching('a'), launching('b')], active: new Set(['web/a', 'web/b']) })
  const one = createAwsLifecycleHook({ instanceId: INSTANCE, region: 'eu-west-1', log, api: only.api, retry: quick, hookName: 'b' })
  t.equal(await one.complete('CONTINUE'), 'completed')
  t.same([...only.active], ['web/a'], 'hook a is left to its owner')
})

t.test('discover() is read-only: Describe* calls only', async t => {
  const { log } = capture()
  const asg = fakeAsg({ group: { name: 'web', state: 'Pending:Wait' }, hooks: [launching('launch')], active: new Set(['web/launch']) })
  const hook = createAwsLifecycleHook({ instanceId: INSTANCE, region: 'eu-west-1', log, api: asg.api, retry: quick })
  t.equal(await hook.discover(), 'asg web, hook launch (Pending:Wait)')
  t.same(asg.actions(), ['DescribeAutoScalingInstances', 'DescribeLifecycleHooks'])
})

t.test('an instance Auto Scaling does not list yet is waited for when IMDS says it is a member', async t => {
  const { log } = capture()
  const asg = fakeAsg({ group: { name: 'web', state: 'Pending' }, hooks: [launching('launch')], active: new Set(['web/launch']), unlistedFor: 2 })
  const hook = createAwsLifecycleHook({ instanceId: INSTANCE, region: 'eu-west-1', lifecycleState: 'InService', log, api: asg.api, retry: quick, discoveryWaitMs: 200 })
  t.equal(await hook.discover(), 'asg web, hook launch (Pending)')
  t.equal(asg.calls.filter(c => c.action === 'DescribeAutoScalingInstances').length, 3)
})

t.test('a failed discovery is tried again by complete()', async t => {
  const { log } = capture()
  const asg = fakeAsg({ group: { name: 'web', state: 'Pending:Wait' }, hooks: [launching('launch')], active: new Set(['web/launch']) })
  let fail = true
  const api: AutoScalingApi = {
    ...asg.api,
    async describeAutoScalingInstances(input) {
      if (fail) {
        fail = false
        throw sdkError('AccessDenied', 403)
      }
      return asg.api.describeAutoScalingInstances(input)
    },
  }
  const hook = createAwsLifecycleHook({ instanceId: INSTANCE, region: 'eu-west-1', log, api, retry: quick })
  const e = await rejected(() => hook.begin())
  t.ok(isAgentError(e) && e.code === 'AWS_ACCESS_DENIED' && /autoscaling:DescribeAutoScalingInstances/.test(e.remedy))
  t.equal(await hook.complete('ABANDON'), 'completed')
})

t.test('terminating transition (watch): only the terminating hooks, heartbeats, one CONTINUE', async t => {
  const { log, lines } = capture()
  const asg = fakeAsg({ group: { name: 'web', state: 'Terminating:Wait' }, hooks: [launching('launch'), terminating('drain')], active: new Set(['web/drain', 'web/launch']) })
  const hook = createAwsLifecycleHook({ transition: 'terminating', instanceId: INSTANCE, region: 'eu-west-1', log, api: asg.api, retry: quick, heartbeatMs: 10 })
  await hook.begin()
  t.equal(hook.description, 'asg web, hook drain (Terminating:Wait)')
  await sleep(40)
  t.ok(asg.calls.some(c => c.action === 'RecordLifecycleActionHeartbeat' && (c.input as { LifecycleHookName: string }).LifecycleHookName === 'drain'), 'heartbeats for the terminating hook')
  t.notOk(asg.calls.some(c => (c.input as { LifecycleHookName?: string }).LifecycleHookName === 'launch'), 'the launching hook is not touched')
  t.equal(await hook.complete('CONTINUE'), 'completed')
  t.same(asg.calls.filter(c => c.action === 'CompleteLifecycleAction').map(c => c.input), [{ AutoScalingGroupName: 'web', LifecycleHookName: 'drain', InstanceId: INSTANCE, LifecycleActionResult: 'CONTINUE' }])
  t.ok(asg.active.has('web/launch'))
  t.ok(lines.some(l => l['msg'] === 'lifecycle action completed: CONTINUE'))
})

t.test('terminating transition: states of other transitions and groups without such a hook are not-applicable', async t => {
  const { log } = capture()
  for (const state of ['InService', 'Pending:Wait', 'Warmed:Running']) {
    const asg = fakeAsg({ group: { name: 'web', state }, hooks: [terminating('drain')], active: new Set(['web/drain']) })
    const hook = createAwsLifecycleHook({ transition: 'terminating', instanceId: INSTANCE, region: 'eu-west-1', log, api: asg.api, retry: quick })
    t.equal(await hook.complete('CONTINUE'), 'not-applicable', state)
    t.equal(hook.description, `asg web, nothing to complete (${state})`)
  }
  const asg = fakeAsg({ group: { name: 'web', state: 'Warmed:Terminating:Wait' }, hooks: [launching('launch')], active: new Set() })
  const hook = createAwsLifecycleHook({ transition: 'terminating', instanceId: INSTANCE, region: 'eu-west-1', log, api: asg.api, retry: quick })
  t.equal(await hook.complete('CONTINUE'), 'not-applicable')
  t.equal(hook.description, 'asg web, no terminating lifecycle hook (Warmed:Terminating:Wait)')
})

t.test('awaitTransition: IMDS says Terminated while Auto Scaling still says InService: discovery waits for Terminating:Wait', async t => {
  const { log } = capture()
  const group = { name: 'web', state: 'InService' }
  const asg = fakeAsg({ group, hooks: [terminating('drain')], active: new Set(['web/drain']) })
  let describes = 0
  const api: AutoScalingApi = {
    ...asg.api,
    async describeAutoScalingInstances(input) {
      if (++describes === 3) group.state = 'Terminating:Wait'
      return asg.api.describeAutoScalingInstances(input)
    },
  }
  const hook = createAwsLifecycleHook({ transition: 'terminating', awaitTransition: true, lifecycleState: 'Terminated', instanceId: INSTANCE, region: 'eu-west-1', log, api, retry: quick, discoveryWaitMs: 500 })
  t.equal(await hook.complete('CONTINUE'), 'completed')
  t.equal(describes, 3, 'asked until the state matched')
  const late = fakeAsg({ group: { name: 'web', state: 'InService' }, hooks: [terminating('drain')], active: new Set(['web/drain']) })
  const bounded = createAwsLifecycleHook({ transition: 'terminating', awaitTransition: true, lifecycleState: 'Terminated', instanceId: INSTANCE, region: 'eu-west-1', log, api: late.api, retry: quick, discoveryWaitMs: 50 })
  t.equal(await bounded.complete('CONTINUE'), 'not-applicable', 'the wait is bounded')
})

t.test('heartbeat interval: a third of the shortest timeout, at least 10 s', async t => {
  t.equal(heartbeatInterval([{ heartbeatTimeoutS: 3600 }]), 1_200_000)
  t.equal(heartbeatInterval([{ heartbeatTimeoutS: 3600 }, { heartbeatTimeoutS: 300 }]), 100_000)
  t.equal(heartbeatInterval([{ heartbeatTimeoutS: 30 }]), 10_000)
})

t.test('completion deadline: half the shortest HeartbeatTimeout, between 30 s and 5 min', async t => {
  t.equal(completionBudgetMs([{ heartbeatTimeoutS: 300 }]), 150_000)
  t.equal(completionBudgetMs([{ heartbeatTimeoutS: 900 }, { heartbeatTimeoutS: 120 }]), 60_000, 'the shortest hook decides')
  t.equal(completionBudgetMs([{ heartbeatTimeoutS: 30 }]), 30_000, 'never under 30 s')
  t.equal(completionBudgetMs([{ heartbeatTimeoutS: 7200 }]), 300_000, 'never over 5 min')
})

t.test('a discovery retried by complete() stays within the completion deadline, not the 60 s budget per call', async t => {
  const { log } = capture()
  let describes = 0
  const asg = fakeAsg({ group: { name: 'web', state: 'Pending:Wait' }, hooks: [launching('launch')], active: new Set(['web/launch']) })
  const api: AutoScalingApi = {
    ...asg.api,
    async describeAutoScalingInstances() {
      describes++
      throw sdkError('Throttling', 400, 'Rate exceeded')
    },
  }
  // no totalMs in `retry`: each call alone would retry for the default 60 s
  const hook = createAwsLifecycleHook({ instanceId: INSTANCE, region: 'eu-west-1', log, api, retry: { baseMs: 1, capMs: 2 }, completeTimeoutMs: 50 })
  const e = await rejected(() => hook.complete('ABANDON'))
  t.ok(isAgentError(e) && e.code === 'AWS_THROTTLED', 'throttled until the deadline')
  // 50 ms of 1-2 ms waits is a few dozen attempts; 60 s of them would be thousands
  t.ok(describes > 1 && describes < 500, `retried within the completion's deadline (${describes} attempts)`)
})
