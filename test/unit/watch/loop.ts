import { Writable } from 'node:stream'
import pino from 'pino'
import t from 'tap'
import type { HookOutcome, LifecycleHook } from '../../../agent/src/seams/lifecycle-hook.js'
import { watchLoop, type WatchLoopOptions } from '../../../agent/src/watch/loop.js'
import type { WatchState } from '../../../agent/src/watch/state.js'

const silent = () => pino({ level: 'debug' }, new Writable({ write: (_c, _e, done) => done() }))

/** one poll's IMDS answers; 'down' = every request fails */
type Frame = { target?: string; spot?: string } | 'down'

interface Harness {
  opts: WatchLoopOptions
  delays: number[]
  saved: WatchState[]
  hookCalls: { awaitTransition: boolean; begin: number; complete: string[] }[]
  drains: number
  runs: string[]
  reports: { outcome: string; instanceId: string | undefined; hookAfter: boolean; completedBefore: number }[]
  abort(): void
}

const harness = (script: Frame[], o: {
  previous?: WatchState
  bootId?: string
  hookOutcome?: (awaitTransition: boolean) => HookOutcome | Error
  drain?: (rec: Parameters<WatchLoopOptions['drain']>[0]) => void
} = {}): Harness => {
  const controller = new AbortController()
  let frame = 0
  let store: WatchState | undefined = o.previous
  const h: Harness = { delays: [], saved: [], hookCalls: [], drains: 0, runs: [], reports: [], abort: () => controller.abort(), opts: undefined as unknown as WatchLoopOptions }
  const current = () => script[Math.min(frame, script.length - 1)]
  h.opts = {
    settings: { watchIntervalMs: 1000 },
    log: silent(),
    signal: controller.signal,
    now: () => new Date(Date.UTC(2026, 0, 1, 0, 0, frame)),
    bootId: o.bootId ?? 'boot-1',
    imds: {
      endpoint: 'http://imds.test',
      async get(path) {
        const f = current()
        if (f === 'down') throw new Error('connect ECONNREFUSED')
        if (path === 'autoscaling/target-lifecycle-state') return f?.target
        if (path === 'spot/instance-action') return f?.spot
        if (path === 'instance-id') return 'i-0abc'
        if (path === 'placement/region') return 'eu-west-1'
        return undefined
      },
    },
    async sleep(ms) {
      h.delays.push(ms)
      frame += 1
      if (frame >= script.length) controller.abort()
    },
    store: {
      read: async () => (store === undefined ? undefined : structuredClone(store)),
      write: async st => {
        store = structuredClone(st)
        h.saved.push(store)
      },
    },
    async drain(record, save) {
      h.drains += 1
      record.steps.push({ name: 'stop', status: 'ok', durationMs: 1 })
      o.drain?.(record)
      record.outcome = record.steps.some(s => s.status === 'failed') ? 'failed' : 'ok'
      await save()
    },
    async reportDrain(record, _st, id, hookAfter) {
      h.reports.push({ outcome: record.outcome, instanceId: id?.instanceId, hookAfter, completedBefore: h.hookCalls.reduce((n, c) => n + c.complete.length, 0) })
    },
    terminatingHook(id, awaitTransition) {
      const calls = { awaitTransition, begin: 0, complete: [] as string[] }
      h.hookCalls.push(calls)
      const hook: LifecycleHook = {
        description: `asg web, hook drain for ${id.instanceId} in ${id.region}`,
        async begin() {
          calls.begin += 1
        },
        async complete(result) {
          calls.complete.push(result)
          const r = o.hookOutcome?.(awaitTransition) ?? 'completed'
          if (r instanceof Error) throw r
          return r
        },
      }
      return hook
    },
    async startRun(reason) {
      h.runs.push(reason)
      return 0
    },
  }
  return h
}

t.test('Terminated: one drain with the hook begun, then one CONTINUE; nothing more on later polls', async t => {
  const h = harness([{ target: 'InService' }, { target: 'Terminated' }, { target: 'Terminated' }, { target: 'Terminated' }])
  const st = await watchLoop(h.opts)
  t.equal(h.drains, 1)
  t.same(h.hookCalls, [{ awaitTransition: true, begin: 1, complete: ['CONTINUE'] }])
  t.match(st, { targetState: 'Terminated', instanceId: 'i-0abc', drain: { reason: 'terminated', outcome: 'ok', trigger: 'target lifecycle state Terminated' }, hook: { outcome: 'completed', answered: true } })
  t.ok(st.drain?.finishedAt)
  t.ok(h.saved.some(s => s.drain?.outcome === 'running'), 'the running drain was saved before it finished (status shows it)')
  t.same(h.delays, [1000, 1000, 1000, 1000])
  t.same(h.reports, [{ outcome: 'ok', instanceId: 'i-0abc', hookAfter: true, completedBefore: 0 }], 'one drain report, sent before the hook was answered')
})

t.test('a failed drain still completes the hook with CONTINUE', async t => {
  const h = harness([{ target: 'Terminated' }], { drain: rec => rec.steps.push({ name: 'pre-stop', status: 'failed', durationMs: 1, detail: 'exited 3' }) })
  const st = await watchLoop(h.opts)
  t.match(st.drain, { outcome: 'failed' })
  t.same(h.hookCalls[0]?.complete, ['CONTINUE'])
  const thrown = harness([{ target: 'Terminated' }])
  thrown.opts.drain = async () => {
    throw new Error('boom')
  }
  const st2 = await watchLoop(thrown.opts)
  t.match(st2.drain, { outcome: 'failed', steps: [{ name: 'drain', status: 'failed', detail: 'boom' }] })
  t.same(thrown.hookCalls[0]?.complete, ['CONTINUE'], 'even when the drain itself throws')
  t.match(thrown.reports, [{ outcome: 'failed', completedBefore: 0 }], 'and its report says so')
})

t.test('spot notice, then Terminated: one drain; the hook is asked again once Terminated', async t => {
  const notice = JSON.stringify({ action: 'terminate', time: '2026-01-01T00:02:00Z' })
  const h = harness([{ target: 'InService' }, { target: 'InService', spot: notice }, { target: 'InService', spot: notice }, { target: 'Terminated', spot: notice }, { target: 'Terminated', spot: notice }],
    { hookOutcome: awaitTransition => (awaitTransition ? 'completed' : 'not-applicable') })
  const st = await watchLoop(h.opts)
  t.equal(h.drains, 1, 'drained once')
  t.equal(h.reports.length, 1, 'one report per drain')
  t.same(h.hookCalls, [{ awaitTransition: false, begin: 1, complete: ['CONTINUE'] }, { awaitTransition: true, begin: 0, complete: ['CONTINUE'] }])
  t.match(st, { spotNotice: { action: 'terminate', time: '2026-01-01T00:02:00Z' }, drain: { reason: 'spot-interruption' }, hook: { outcome: 'completed', answered: true } })
})

t.test('a hook completion that fails is tried again at the next poll, until answered', async t => {
  let n = 0
  const h = harness([{ target: 'Terminated' }, { target: 'Terminated' }, { target: 'Terminated' }], { hookOutcome: () => (++n === 1 ? new Error('Throttling') : 'no-active-action') })
  const st = await watchLoop(h.opts)
  t.equal(h.drains, 1)
  t.equal(h.hookCalls.length, 2)
  t.match(st.hook, { outcome: 'no-active-action', answered: true })
})

t.test('IMDS down: backoff doubles, state says so, then recovers', async t => {
  const h = harness([{ target: 'InService' }, 'down', 'down', 'down', { target: 'InService' }, { target: 'InService' }])
  const st = await watchLoop(h.opts)
  t.same(h.delays, [1000, 2000, 4000, 8000, 1000, 1000])
  t.match(h.saved.find(s => s.imds.consecutiveFailures === 3)?.imds, { ok: false, error: /ECONNREFUSED/ })
  t.same(st.imds, { ok: true, consecutiveFailures: 0 })
  t.equal(h.drains, 0)
})

t.test('warm pool: Warmed:Running -> InService starts one run; InService from the start does not', async t => {
  const h = harness([{ target: 'Warmed:Running' }, { target: 'Warmed:Running' }, { target: 'InService' }, { target: 'InService' }])
  const st = await watchLoop(h.opts)
  await Promise.resolve()
  t.same(h.runs, ['warm-pool'])
  t.match(st.runs, [{ reason: 'warm-pool' }])
  const idle = harness([{ target: 'InService' }, { target: 'InService' }])
  await watchLoop(idle.opts)
  t.same(idle.runs, [])
})

t.test('restarted in the same boot: no second drain; an earlier boot is forgotten; a drain cut short is run again', async t => {
  const done = harness([{ target: 'Terminated' }])
  const first = await watchLoop(done.opts)
  const again = harness([{ target: 'Terminated' }], { previous: first })
  const st = await watchLoop(again.opts)
  t.equal(again.drains, 0, 'drained already in this lifetime')
  t.equal(again.hookCalls.length, 0, 'and the hook was answered')
  t.equal(st.drain?.startedAt, first.drain?.startedAt)

  const reboot = harness([{ target: 'InService', spot: '{"action":"stop","time":"x"}' }], { previous: first, bootId: 'boot-2' })
  await watchLoop(reboot.opts)
  t.equal(reboot.drains, 1, 'a new boot (a spot-stopped instance started again) is a new lifetime')

  const cut = harness([{ target: 'Terminated' }], { previous: { ...first, drain: { ...first.drain!, outcome: 'running' }, hook: undefined } })
  await watchLoop(cut.opts)
  t.equal(cut.drains, 1, 'the drain the previous watch died in is run again')
})

t.test('a watch.json that cannot be written does not stop the drain', async t => {
  const h = harness([{ target: 'Terminated' }])
  h.opts.store.write = async () => {
    throw new Error('ENOSPC: no space left on device')
  }
  const st = await watchLoop(h.opts)
  t.equal(h.drains, 1)
  t.match(st.drain, { outcome: 'ok' })
  t.same(h.hookCalls[0]?.complete, ['CONTINUE'])
})

t.test('SIGTERM during a drain: the drain and the hook finish first, then the loop ends', async t => {
  let h: Harness | undefined
  h = harness([{ target: 'Terminated' }, { target: 'Terminated' }, { target: 'Terminated' }], {
    drain: rec => {
      h?.abort()
      rec.steps.push({ name: 'flush-logs', status: 'ok', durationMs: 1 })
    },
  })
  const st = await watchLoop(h.opts)
  t.match(st.drain, { outcome: 'ok', steps: [{ name: 'stop' }, { name: 'flush-logs' }] })
  t.same(h.hookCalls[0]?.complete, ['CONTINUE'])
  t.equal(h.delays.length, 1, 'no poll after the signal')
})
