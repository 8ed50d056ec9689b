import t from 'tap'
import { Writable } from 'node:stream'
import pino from 'pino'
import { AgentError, ConfigError } from '../../../agent/src/core/errors.js'
import { runPhases, type Phase } from '../../../agent/src/run/runner.js'
import type { RunState } from '../../../agent/src/run/state.js'

const setup = () => {
  const lines: Record<string, unknown>[] = []
  const log = pino({ base: {} }, new Writable({ write(c, _e, cb) { lines.push(JSON.parse(String(c))); cb() } }))
  const state: RunState = { version: 1, runId: 'r', command: 'run', reason: 'manual', mode: 'local', pid: 1, startedAt: '', outcome: 'running', phases: [] }
  const saves: string[][] = []
  return { lines, log, state, saves, saveState: async (s: RunState) => { saves.push(s.phases.map(p => `${p.name}:${p.status}`)) } }
}

t.test('phases run in order, each timed, logged and saved', async t => {
  const h = setup()
  const order: string[] = []
  const phases: Phase<object>[] = [
    { name: 'a', run: async () => { order.push('a') } },
    { name: 'b', run: async () => { order.push('b'); return { status: 'skipped', detail: 'nothing to do' } } },
  ]
  const fin: string[] = []
  const err = await runPhases(phases, { ctx: {}, ...h, finally: async (_c, ok) => { fin.push(String(ok)) } })
  t.equal(err, undefined)
  t.same(order, ['a', 'b'])
  t.same(fin, ['true'])
  t.same(h.state.phases.map(p => [p.name, p.status]), [['a', 'ok'], ['b', 'skipped'], ['complete', 'ok']])
  t.same(h.saves.at(-1), ['a:ok', 'b:skipped', 'complete:ok'])
  t.ok(h.lines.every(l => typeof l['durationMs'] === 'number' && typeof l['phase'] === 'string'), 'one JSON line per phase with its duration')
})

t.test('a failure stops the list, runs onFailure, then finally; the error keeps its policy', async t => {
  const h = setup()
  const ran: string[] = []
  const phases: Phase<object>[] = [
    { name: 'a', run: async () => { throw new ConfigError('bad tag', 'fix it') } },
    { name: 'b', run: async () => { ran.push('b') } },
  ]
  const err = await runPhases(phases, {
    ctx: {}, ...h,
    onFailure: async (_c, e, phase) => { ran.push(`rollback after ${phase}: ${e.code}`); return { detail: 'rolled back' } },
    finally: async (_c, ok) => { ran.push(`complete ok=${ok}`) },
  })
  t.equal(err?.exitCode, 2)
  t.same(ran, ['rollback after a: CONFIG_INVALID', 'complete ok=false'])
  t.same(h.state.error, { code: 'CONFIG_INVALID', message: 'bad tag', remedy: 'fix it', phase: 'a' })
  t.same(h.state.phases.map(p => p.name), ['a', 'rollback', 'complete'])
})

t.test('a non-agent error becomes UNEXPECTED with exit 1', async t => {
  const h = setup()
  const err = await runPhases([{ name: 'x', run: async () => { throw new TypeError('boom') } }], { ctx: {}, ...h })
  t.type(err, AgentError)
  t.equal(err?.code, 'UNEXPECTED')
  t.equal(err?.exitCode, 1)
})
