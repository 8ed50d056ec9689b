/**
 * The LifecycleHook on AWS (the model is buildkite/lifecycled's autoscaling.go): find this
 * instance's Auto Scaling group and its hook(s) for one transition (launching for `run`,
 * terminating for `watch`), heartbeat while the long work runs, and complete the lifecycle
 * action exactly once, on its own deadline (invariant 6).
 *
 * Discovery is lazy (first begin(), complete() or discover()), so `Seams.hook` stays a
 * synchronous factory: the run builds the hook in `resolve` and nothing else has to await it.
 * Only Describe* calls happen during discovery, so `discover()` is safe for a dry run.
 *
 * Several launching hooks on one group: the instance stays in Pending:Wait until every one of
 * them is completed, and an uncompleted one ends in its DefaultResult (usually ABANDON) after its
 * timeout. The agent is what knows whether the instance is ready, so it heartbeats and completes
 * each of them; `hookName` restricts it to one when another system owns the others.
 */
import {
  AutoScalingClient, CompleteLifecycleActionCommand, DescribeAutoScalingInstancesCommand, DescribeLifecycleHooksCommand,
  RecordLifecycleActionHeartbeatCommand,
  type AutoScalingInstancesType, type CompleteLifecycleActionType, type DescribeAutoScalingInstancesType,
  type DescribeLifecycleHooksAnswer, type DescribeLifecycleHooksType, type RecordLifecycleActionHeartbeatType,
} from '@aws-sdk/client-auto-scaling'
import { classifyAwsError, sdkClientConfig, withRetry, type AwsCall, type RetryOptions } from './retry.js'
import { messageOf } from '../core/errors.js'
import type { HookOutcome, HookResult, LifecycleHook } from '../seams/lifecycle-hook.js'
import type { Logger } from '../core/logger.js'

/** The subset of the Auto Scaling API we use. */
export interface AutoScalingApi {
  describeAutoScalingInstances(input: DescribeAutoScalingInstancesType): Promise<AutoScalingInstancesType>
  describeLifecycleHooks(input: DescribeLifecycleHooksType): Promise<DescribeLifecycleHooksAnswer>
  recordLifecycleActionHeartbeat(input: RecordLifecycleActionHeartbeatType): Promise<unknown>
  completeLifecycleAction(input: CompleteLifecycleActionType): Promise<unknown>
}

export const createAutoScalingApi = (region: string, budgetMs?: number): AutoScalingApi => {
  const asg = new AutoScalingClient(sdkClientConfig(region, budgetMs))
  return {
    describeAutoScalingInstances: input => asg.send(new DescribeAutoScalingInstancesCommand(input)),
    describeLifecycleHooks: input => asg.send(new DescribeLifecycleHooksCommand(input)),
    recordLifecycleActionHeartbeat: input => asg.send(new RecordLifecycleActionHeartbeatCommand(input)),
    completeLifecycleAction: input => asg.send(new CompleteLifecycleActionCommand(input)),
  }
}

export interface AwsLifecycleHookOptions {
  instanceId: string
  region: string
  /** IMDS autoscaling/target-lifecycle-state: set only for group members, so when Auto Scaling
   * does not list the instance yet (eventual consistency right after launch) discovery waits */
  lifecycleState?: string
  log: Logger
  api?: AutoScalingApi
  /** which transition's hooks (default launching) */
  transition?: Transition
  /** complete only this hook (default: every hook of the group for the transition) */
  hookName?: string
  /** heartbeat interval (default: a third of the shortest HeartbeatTimeout, at least 10 s) */
  heartbeatMs?: number
  /** deadline of the completion, retries included (default: completionBudgetMs of the hooks; a
   * discovery retried by complete() gets 30 s) */
  completeTimeoutMs?: number
  /** how long discovery waits for Auto Scaling to list an instance IMDS says is a member (30 s) */
  discoveryWaitMs?: number
  /** also wait (discoveryWaitMs) until Auto Scaling shows the transition's states: IMDS said
   * Terminated, and DescribeAutoScalingInstances may still say InService for a moment */
  awaitTransition?: boolean
  /** backoff of every call (tests shorten it); `totalMs` (--aws-timeout) bounds discovery, its
   * retry by complete() and heartbeats, not the completion (see completeAll) */
  retry?: Pick<RetryOptions, 'baseMs' | 'capMs' | 'totalMs'>
}

export const LAUNCHING = 'autoscaling:EC2_INSTANCE_LAUNCHING'
export const TERMINATING = 'autoscaling:EC2_INSTANCE_TERMINATING'
export type Transition = 'launching' | 'terminating'

/** Per transition: its LifecycleTransition name, and the states in which an action of it is (or
 * is about to be) waiting. Pending / Terminating (and their Warmed: forms, for warm-pool
 * instances) come just before the Wait state: the action will exist by complete(). */
const TRANSITIONS: Readonly<Record<Transition, { name: string; waiting: ReadonlySet<string> }>> = {
  launching: { name: LAUNCHING, waiting: new Set(['Pending', 'Pending:Wait', 'Warmed:Pending', 'Warmed:Pending:Wait']) },
  terminating: { name: TERMINATING, waiting: new Set(['Terminating', 'Terminating:Wait', 'Warmed:Terminating', 'Warmed:Terminating:Wait']) },
}
const MIN_HEARTBEAT_MS = 10_000

type Discovery =
  | { kind: 'none'; description: string }
  | { kind: 'waiting'; asg: string; state: string; hooks: { name: string; heartbeatTimeoutS: number }[]; description: string }

/** CompleteLifecycleAction / heartbeat when the action is gone: completed, timed out, or never there. */
const isNoActiveAction = (e: unknown) => {
  const info = classifyAwsError(e)
  return info.kind === 'invalid' && /No active Lifecycle Action found/i.test(info.message)
}

const sleep = (ms: number) => new Promise<void>(resolve => setTimeout(resolve, ms))

/** Discovery that failed before and is retried by complete() gets this much. */
const DISCOVERY_IN_COMPLETE_MS = 30_000

/**
 * The deadline of a completion, retries included: half of the shortest HeartbeatTimeout (the
 * action stays active that long after the last heartbeat, and heartbeats stop when completion
 * starts), at least 30 s, at most 5 min. A fleet booting at once throttles Auto Scaling's shared
 * bucket (docs/reliability.md, "Boot storm"): a fixed 30 s let healthy instances be abandoned.
 */
export const completionBudgetMs = (hooks: readonly { heartbeatTimeoutS: number }[]): number =>
  Math.min(300_000, Math.max(30_000, (Math.min(...hooks.map(h => h.heartbeatTimeoutS)) * 1000) / 2))

export const heartbeatInterval = (hooks: readonly { heartbeatTimeoutS: number }[]): number =>
  Math.max(MIN_HEARTBEAT_MS, Math.min(...hooks.map(h => (h.heartbeatTimeoutS * 1000) / 3)))

export const createAwsLifecycleHook = (opts: AwsLifecycleHookOptions): LifecycleHook & { discover(): Promise<string> } => {
  const { instanceId, log } = opts
  const kind = opts.transition ?? 'launching'
  const transition = TRANSITIONS[kind]
  let api: AutoScalingApi | undefined = opts.api
  const asg = () => (api ??= createAutoScalingApi(opts.region, opts.retry?.totalMs))
  /** the caller's AWS budget (--aws-timeout), where it is shorter than a call's own */
  const budget = (ms: number) => Math.min(ms, opts.retry?.totalMs ?? ms)
  const call = <T>(what: AwsCall, fn: () => Promise<T>, totalMs?: number) =>
    withRetry(what, fn, {
      ...opts.retry,
      ...(totalMs === undefined ? {} : { totalMs }),
      onRetry: i => log.warn({ aws: `${what.service}:${what.action}`, resource: what.resource, ...i }, `AWS ${what.action} failed (${i.code}); retrying`),
    })

  let description = `asg not discovered yet (instance ${instanceId})`
  let discovery: Promise<Discovery> | undefined
  let timer: NodeJS.Timeout | undefined
  let beating = false
  let completion: Promise<HookOutcome> | undefined

  /** `left()`: what remains of the caller's budget (undefined: each call has the default budget) */
  const findGroup = async (left: () => number | undefined) => {
    const waitMs = Math.min(opts.lifecycleState === undefined ? 0 : opts.discoveryWaitMs ?? 30_000, left() ?? Infinity)
    const deadline = Date.now() + waitMs
    for (;;) {
      const r = await call({ service: 'autoscaling', action: 'DescribeAutoScalingInstances', resource: instanceId },
        () => asg().describeAutoScalingInstances({ InstanceIds: [instanceId] }), left())
      const me = r.AutoScalingInstances?.find(i => i.InstanceId === instanceId)
      const settled = me !== undefined && (!opts.awaitTransition || transition.waiting.has(me.LifecycleState ?? ''))
      if (settled || Date.now() >= deadline) return me
      await sleep(Math.min(2_000, Math.max(1, waitMs / 5)))
    }
  }

  const runDiscovery = async (budgetMs: number | undefined): Promise<Discovery> => {
    const end = budgetMs === undefined ? undefined : Date.now() + budgetMs
    const left = () => (end === undefined ? undefined : Math.max(1, end - Date.now()))
    const me = await findGroup(left)
    if (!me?.AutoScalingGroupName) {
      if (opts.lifecycleState !== undefined) log.warn({ instanceId, imdsTargetState: opts.lifecycleState }, 'instance metadata names a target lifecycle state, but Auto Scaling does not list this instance')
      return { kind: 'none', description: `none (${instanceId} is not in an Auto Scaling group)` }
    }
    const group = me.AutoScalingGroupName
    const state = me.LifecycleState ?? 'unknown'
    if (!transition.waiting.has(state)) return { kind: 'none', description: `asg ${group}, nothing to complete (${state})` }
    const r = await call({ service: 'autoscaling', action: 'DescribeLifecycleHooks', resource: group },
      () => asg().describeLifecycleHooks({ AutoScalingGroupName: group }), left())
    const hooks = (r.LifecycleHooks ?? [])
      .filter(h => h.LifecycleTransition === transition.name && h.LifecycleHookName !== undefined && (opts.hookName === undefined || h.LifecycleHookName === opts.hookName))
      .map(h => ({ name: h.LifecycleHookName ?? '', heartbeatTimeoutS: h.HeartbeatTimeout ?? 3600 }))
    if (hooks.length === 0) {
      const which = opts.hookName === undefined ? `no ${kind} lifecycle hook` : `no ${kind} lifecycle hook named ${opts.hookName}`
      return { kind: 'none', description: `asg ${group}, ${which} (${state})` }
    }
    if (hooks.length > 1) log.warn({ asg: group, hooks: hooks.map(h => h.name) }, `several ${kind} lifecycle hooks: the agent heartbeats and completes each of them`)
    const names = hooks.map(h => h.name).join(', ')
    return { kind: 'waiting', asg: group, state, hooks, description: `asg ${group}, ${hooks.length > 1 ? 'hooks' : 'hook'} ${names} (${state})` }
  }

  /** Memoized on success only: a failed discovery is tried again by complete(), within the
   * completion's own deadline (`budgetMs`), not on the default budget of every call. */
  const discover = (budgetMs?: number): Promise<Discovery> => {
    discovery ??= runDiscovery(budgetMs).then(
      d => {
        description = d.description
        log.info({ instanceId, lifecycleHook: d.description }, `lifecycle hook: ${d.description}`)
        return d
      },
      (e: unknown) => {
        discovery = undefined
        throw e
      },
    )
    return discovery
  }

  const heartbeat = async (d: Extract<Discovery, { kind: 'waiting' }>, intervalMs: number) => {
    if (beating) return
    beating = true
    try {
      for (const h of d.hooks) {
        const what: AwsCall = { service: 'autoscaling', action: 'RecordLifecycleActionHeartbeat', resource: `${d.asg}/${h.name}` }
        try {
          await call(what, async () => {
            try {
              await asg().recordLifecycleActionHeartbeat({ AutoScalingGroupName: d.asg, LifecycleHookName: h.name, InstanceId: instanceId })
            } catch (e) {
              if (!isNoActiveAction(e)) throw e
              log.info({ asg: d.asg, hook: h.name }, 'heartbeat: no active lifecycle action yet (or any more)')
              return
            }
            log.debug({ asg: d.asg, hook: h.name }, 'lifecycle action heartbeat sent')
          }, budget(Math.min(intervalMs / 2, 20_000)))
        } catch (e) {
          // a missed heartbeat costs nothing until the hook's timeout; the next one may work
          if (timer) log.warn({ asg: d.asg, hook: h.name, error: messageOf(e) }, 'lifecycle action heartbeat failed')
        }
      }
    } finally {
      beating = false
    }
  }

  const stopHeartbeats = () => {
    if (timer) clearInterval(timer)
    timer = undefined
  }

  const completeAll = async (result: HookResult): Promise<HookOutcome> => {
    stopHeartbeats()
    // discovery is a Describe call like resolve's, on the same budget: --aws-timeout bounds it.
    // The completion keeps its own deadline (only each attempt is cut, as every call's): giving
    // it up hands a healthy instance to the hook's DefaultResult (ABANDON: terminated), while the
    // action waits for it until the HeartbeatTimeout; a low budget meant to fail fast on a dead
    // network would bring back the boot storm's lost completions (docs/reliability.md)
    const d = await discover(opts.completeTimeoutMs ?? budget(DISCOVERY_IN_COMPLETE_MS))
    if (d.kind === 'none') return 'not-applicable'
    const totalMs = opts.completeTimeoutMs ?? completionBudgetMs(d.hooks)
    const outcomes: HookOutcome[] = []
    let failure: unknown
    for (const h of d.hooks) {
      const what: AwsCall = { service: 'autoscaling', action: 'CompleteLifecycleAction', resource: `${d.asg}/${h.name}` }
      try {
        const outcome = await call(what, async (): Promise<HookOutcome> => {
          try {
            await asg().completeLifecycleAction({ AutoScalingGroupName: d.asg, LifecycleHookName: h.name, InstanceId: instanceId, LifecycleActionResult: result })
            return 'completed'
          } catch (e) {
            if (isNoActiveAction(e)) return 'no-active-action'
            throw e
          }
        }, totalMs)
        if (outcome === 'completed') log.info({ asg: d.asg, hook: h.name, result }, `lifecycle action completed: ${result}`)
        else log.info({ asg: d.asg, hook: h.name, result }, 'no active lifecycle action (completed already, timed out, or a manual/SSM run): nothing to complete')
        outcomes.push(outcome)
      } catch (e) {
        // the other hooks still get their answer; the first failure is reported after them
        failure ??= e
        log.error({ asg: d.asg, hook: h.name, result, error: messageOf(e) }, 'lifecycle action could not be completed')
      }
    }
    if (failure !== undefined) throw failure
    return outcomes.includes('completed') ? 'completed' : 'no-active-action'
  }

  return {
    get description() {
      return description
    },
    async discover() {
      return (await discover()).description
    },
    async begin() {
      const d = await discover()
      if (d.kind === 'none' || timer || completion) return
      const intervalMs = opts.heartbeatMs ?? heartbeatInterval(d.hooks)
      timer = setInterval(() => void heartbeat(d, intervalMs), intervalMs)
      // the run's finally completes the hook; a forgotten timer must not keep the agent alive
      timer.unref()
      log.info({ asg: d.asg, hooks: d.hooks.map(h => h.name), intervalMs }, 'lifecycle action heartbeats started')
    },
    complete(result) {
      completion ??= completeAll(result)
      return completion
    },
  }
}
