/**
 * The watch loop: poll IMDS (target lifecycle state, spot instance-action), let watch/policy.ts
 * decide, apply the decision, record everything in watch.json, sleep (backing off while IMDS
 * does not answer), until the stop signal. Every side effect is a parameter, so unit tests drive
 * the loop with fakes.
 *
 * The terminating hook is answered with CONTINUE after the drain, also when a drain step failed:
 * the instance is going away regardless, and ABANDON would not keep it (for a terminating hook
 * both results let the termination proceed; ABANDON only skips the remaining hooks). Waiting
 * instead would only hold a dying instance until the hook's timeout. Heartbeats run while the
 * drain runs, so a drain longer than the hook's heartbeat timeout is not cut short.
 */
import type { Imds } from '../aws/identity.js'
import { messageOf } from '../core/errors.js'
import type { LifecycleHook } from '../seams/lifecycle-hook.js'
import type { Logger } from '../core/logger.js'
import type { WatchSettings } from '../config/settings.js'
import { decide, isTermination, parseSpotAction, pollDelay, type Decision, type Memory, type Observation } from './policy.js'
import type { DrainReason, DrainRecord, WatchState } from './state.js'

export interface WatchLoopOptions {
  settings: Pick<WatchSettings, 'watchIntervalMs'>
  log: Logger
  imds: Imds
  /** aborted by SIGTERM / SIGINT: the loop ends after the current poll (or drain) */
  signal: AbortSignal
  now: () => Date
  /** resolves after `ms`, or early once `signal` is aborted */
  sleep: (ms: number, signal: AbortSignal) => Promise<void>
  bootId: string
  store: { read(): Promise<WatchState | undefined>; write(s: WatchState): Promise<void> }
  /** runs the drain steps, recording each into `record` (watch/drain.ts) */
  drain: (record: DrainRecord, save: () => Promise<void>) => Promise<void>
  /** this instance's terminating hook; awaitTransition: IMDS already says Terminated */
  terminatingHook: (id: { instanceId: string; region: string }, awaitTransition: boolean) => LifecycleHook
  /** `bootstrap-agent run --reason warm-pool`, resolving with its exit code */
  startRun: (reason: 'warm-pool') => Promise<number>
  /** the drain's run report (reports/drain-reporter.ts), sent before the terminating hook is
   * answered: after that the instance goes away. Bounded by its own deadline, never throws */
  reportDrain: (record: DrainRecord, st: WatchState, id: { instanceId: string; region: string } | undefined, hookAfter: boolean) => Promise<void>
}

const regionOf = (region: string | undefined, az: string | undefined): string | undefined =>
  region ?? /^([a-z]{2}(?:-[a-z]+)+-\d+)[a-z]$/.exec(az ?? '')?.[1]

/** The previous record of this boot is kept (a drain happens once per instance lifetime); one
 * from an earlier boot (a spot-stopped instance started again) is not. */
const initialState = (o: WatchLoopOptions, prev: WatchState | undefined): WatchState => {
  const st: WatchState = {
    version: 1, pid: process.pid, bootId: o.bootId, startedAt: o.now().toISOString(),
    imds: { ok: true, consecutiveFailures: 0 }, runs: [],
  }
  if (prev?.bootId !== o.bootId) return st
  if (prev.instanceId) st.instanceId = prev.instanceId
  if (prev.spotNotice) st.spotNotice = prev.spotNotice
  if (prev.hook) st.hook = prev.hook
  // a drain cut short by the watch's own death (systemd restarts it) is run again, whole
  if (prev.drain && prev.drain.outcome !== 'running') st.drain = prev.drain
  else if (prev.drain) o.log.warn({ drain: prev.drain }, 'the previous watch died during a drain: draining again')
  st.runs = prev.runs ?? []
  return st
}

export const watchLoop = async (o: WatchLoopOptions): Promise<WatchState> => {
  const { log, imds } = o
  const st = initialState(o, await o.store.read().catch(() => undefined))
  // a record that cannot be written (disk full) must not stop a drain halfway: logged, not thrown
  const save = () => o.store.write(st).catch((e: unknown) => log.error({ error: messageOf(e) }, 'watch.json could not be written; status may be behind'))
  let drained = st.drain !== undefined
  let hookAnswered = st.hook?.answered === true
  let running: Promise<void> | undefined
  let identity: { instanceId: string; region: string } | undefined

  const identify = async () => {
    if (identity) return identity
    const [instanceId, region, az] = await Promise.all([imds.get('instance-id'), imds.get('placement/region'), imds.get('placement/availability-zone')])
    const r = regionOf(region, az)
    if (!instanceId || !r) throw new Error(`instance metadata gave no ${instanceId ? 'region' : 'instance-id'}`)
    st.instanceId = instanceId
    return (identity = { instanceId, region: r })
  }

  const answerHook = async (hook: LifecycleHook, terminating: boolean) => {
    const at = () => o.now().toISOString()
    try {
      const outcome = await hook.complete('CONTINUE')
      // not-applicable before Terminated (a spot notice, the group not there yet): asked again later
      st.hook = { outcome, detail: hook.description, at: at(), answered: outcome !== 'not-applicable' || terminating }
    } catch (e) {
      st.hook = { outcome: 'failed', detail: messageOf(e), at: at(), answered: false }
    }
    hookAnswered = st.hook.answered
    log[st.hook.outcome === 'failed' ? 'error' : 'info']({ hook: st.hook }, `terminating lifecycle hook: ${st.hook.outcome} (${st.hook.detail})`)
  }

  const terminatingHook = async (terminating: boolean): Promise<LifecycleHook | undefined> => {
    try {
      return o.terminatingHook(await identify(), terminating)
    } catch (e) {
      st.hook = { outcome: 'failed', detail: `instance not identified: ${messageOf(e)}`, at: o.now().toISOString(), answered: false }
      log.error({ error: messageOf(e) }, 'terminating lifecycle hook: the instance could not be identified; tried again at the next poll')
      return undefined
    }
  }

  const drain = async (reason: DrainReason, trigger: string, terminating: boolean) => {
    const t0 = performance.now()
    const record: DrainRecord = { reason, trigger, startedAt: o.now().toISOString(), outcome: 'running', steps: [] }
    st.drain = record
    log.warn({ reason, trigger }, `draining: ${trigger}`)
    await save()
    const hook = await terminatingHook(terminating)
    // discovery and heartbeats run beside the drain: a slow DescribeAutoScalingInstances must not
    // delay the pre-stop command inside the two-minute spot window
    const begun = hook?.begin().catch((e: unknown) => log.warn({ error: messageOf(e) }, 'terminating lifecycle hook: discovery failed; complete() tries again'))
    try {
      await o.drain(record, save)
    } catch (e) {
      record.outcome = 'failed'
      record.steps.push({ name: 'drain', status: 'failed', durationMs: 0, detail: messageOf(e) })
    }
    record.finishedAt = o.now().toISOString()
    record.durationMs = Math.round(performance.now() - t0)
    drained = true
    await save()
    // the evidence leaves the instance before the answer that lets it go
    await o.reportDrain(record, st, identity, hook !== undefined)
    await begun
    if (hook) await answerHook(hook, terminating)
    log.info({ drain: record, hook: st.hook }, `drain finished: ${record.outcome}`)
  }

  const act = async (d: Decision, obs: Observation) => {
    const terminating = isTermination(obs.targetState)
    if (d.kind === 'drain') return drain(d.reason, d.trigger, terminating)
    if (d.kind === 'complete-hook') {
      const hook = await terminatingHook(true)
      if (hook) await answerHook(hook, true)
      return
    }
    const entry: WatchState['runs'][number] = { reason: 'warm-pool', startedAt: o.now().toISOString() }
    st.runs.push(entry)
    log.info({ trigger: d.trigger }, `${d.trigger}: starting bootstrap-agent run --reason warm-pool`)
    running = o.startRun('warm-pool')
      .then(code => void (entry.exitCode = code), (e: unknown) => {
        entry.exitCode = -1
        log.error({ error: messageOf(e) }, 'the warm-pool run could not be started')
      })
      .finally(() => {
        running = undefined
        log.info({ run: entry }, `warm-pool run finished: exit ${entry.exitCode}`)
        return save()
      })
  }

  const poll = async (): Promise<Observation> => {
    const [target, spot] = await Promise.all([imds.get('autoscaling/target-lifecycle-state'), imds.get('spot/instance-action')])
    return { targetState: target?.trim() || undefined, spot: spot === undefined ? undefined : parseSpotAction(spot) }
  }

  log.info({ bootId: o.bootId, intervalMs: o.settings.watchIntervalMs, endpoint: imds.endpoint, drainedAlready: drained }, 'watch started')
  let failures = 0
  let previousTarget: Memory['previousTarget'] = 'first'
  while (!o.signal.aborted) {
    let obs: Observation | undefined
    try {
      obs = await poll()
    } catch (e) {
      failures += 1
      st.imds = { ok: false, error: messageOf(e), consecutiveFailures: failures }
      // the first failure and every tenth: a dead IMDS must not flood the journal
      if (failures === 1 || failures % 10 === 0) log.warn({ failures, error: messageOf(e), nextPollMs: pollDelay(o.settings.watchIntervalMs, failures) }, 'IMDS poll failed; backing off')
    }
    st.lastPollAt = o.now().toISOString()
    if (obs) {
      if (failures > 0) log.info({ failures }, `IMDS answers again after ${failures} failed poll${failures > 1 ? 's' : ''}`)
      failures = 0
      st.imds = { ok: true, consecutiveFailures: 0 }
      const target = obs.targetState ?? null
      if (previousTarget === 'first' || target !== (st.targetState ?? null)) log.info({ targetState: target, previous: st.targetState ?? null }, `target lifecycle state: ${target ?? 'none (not in an Auto Scaling group)'}`)
      st.targetState = target
      if (obs.spot && !st.spotNotice) {
        st.spotNotice = { ...obs.spot, seenAt: st.lastPollAt }
        log.warn({ spot: obs.spot }, `spot interruption notice: ${obs.spot.action} at ${obs.spot.time}`)
      }
      for (const d of decide({ previousTarget, drained, hookAnswered, runInProgress: running !== undefined }, obs)) await act(d, obs)
      previousTarget = obs.targetState
    }
    await save()
    await o.sleep(pollDelay(o.settings.watchIntervalMs, failures), o.signal)
  }
  log.info('watch stopped')
  return st
}
