import t from 'tap'
import { decide, isTermination, parseSpotAction, pollDelay, type Memory, type Observation } from '../../../agent/src/watch/policy.js'

const fresh: Memory = { previousTarget: 'InService', drained: false, hookAnswered: false, runInProgress: false }
const obs = (targetState: string | undefined, spot?: Observation['spot']): Observation => ({ targetState, spot })
const spot = { action: 'terminate', time: '2026-01-01T00:02:00Z' }

t.test('decisions, table-driven', async t => {
  const cases: [string, Memory, Observation, unknown[]][] = [
    ['InService, nothing to do', fresh, obs('InService'), []],
    ['not in a group', fresh, obs(undefined), []],
    ['Terminated: drain', fresh, obs('Terminated'), [{ kind: 'drain', reason: 'terminated', trigger: 'target lifecycle state Terminated' }]],
    ['Warmed:Terminated: drain (a warm-pool instance being removed)', fresh, obs('Warmed:Terminated'), [{ kind: 'drain', reason: 'terminated' }]],
    ['Terminated wins over a spot notice', fresh, obs('Terminated', spot), [{ kind: 'drain', reason: 'terminated' }]],
    ['spot notice: drain', fresh, obs('InService', spot), [{ kind: 'drain', reason: 'spot-interruption', trigger: 'spot instance-action terminate at 2026-01-01T00:02:00Z' }]],
    ['spot notice outside a group', fresh, obs(undefined, spot), [{ kind: 'drain', reason: 'spot-interruption' }]],
    ['drained by spot, then Terminated: the hook only', { ...fresh, drained: true }, obs('Terminated', spot), [{ kind: 'complete-hook' }]],
    ['drained and answered: nothing', { ...fresh, drained: true, hookAnswered: true }, obs('Terminated'), []],
    ['drained, spot notice still there: nothing', { ...fresh, drained: true }, obs('InService', spot), []],
    ['Warmed:Stopped, Warmed:Running, Warmed:Hibernated are no termination', fresh, obs('Warmed:Running'), []],
    ['Warmed:Running -> InService: a warm-pool run', { ...fresh, previousTarget: 'Warmed:Running' }, obs('InService'), [{ kind: 'warm-pool-run', trigger: 'target lifecycle state Warmed:Running -> InService' }]],
    ['Warmed:Hibernated -> InService too', { ...fresh, previousTarget: 'Warmed:Hibernated' }, obs('InService'), [{ kind: 'warm-pool-run' }]],
    ['InService at the first poll: nothing (the boot run does it)', { ...fresh, previousTarget: 'first' }, obs('InService'), []],
    ['a run in progress: no second one', { ...fresh, previousTarget: 'Warmed:Running', runInProgress: true }, obs('InService'), []],
    ['Warmed:Running -> Terminated: a drain, no run', { ...fresh, previousTarget: 'Warmed:Running' }, obs('Terminated'), [{ kind: 'drain' }]],
    ['drained instance leaving a warm pool: no run', { ...fresh, previousTarget: 'Warmed:Running', drained: true, hookAnswered: true }, obs('InService'), []],
    ['Standby, Detached: nothing', fresh, obs('Standby'), []],
  ]
  for (const [name, m, o, want] of cases) {
    const got = decide(m, o)
    t.equal(got.length, want.length, `${name}: ${want.length} decision(s)`)
    t.match(got, want, name)
  }
})

t.test('isTermination', async t => {
  t.ok(isTermination('Terminated'))
  t.ok(isTermination('Warmed:Terminated'))
  for (const s of ['InService', 'Warmed:Stopped', 'Detached', undefined]) t.notOk(isTermination(s), String(s))
})

t.test('spot/instance-action bodies', async t => {
  t.same(parseSpotAction('{"action": "stop", "time": "2026-01-01T00:02:00Z"}'), { action: 'stop', time: '2026-01-01T00:02:00Z' })
  t.same(parseSpotAction('{"action": 1}'), { action: 'unknown', time: '{"action": 1}' }, 'an unexpected shape is still a notice')
  t.same(parseSpotAction('not json'), { action: 'unknown', time: 'not json' })
  t.equal(parseSpotAction('x'.repeat(500)).time.length, 64, 'kept short')
})

t.test('poll delay: the interval, doubled per failure, capped at 30 s', async t => {
  t.same([0, 1, 2, 3, 4, 5, 10].map(f => pollDelay(5000, f)), [5000, 10_000, 20_000, 30_000, 30_000, 30_000, 30_000])
  t.same([0, 1, 2].map(f => pollDelay(1000, f)), [1000, 2000, 4000])
  t.equal(pollDelay(60_000, 3), 60_000, 'never below the interval')
})
