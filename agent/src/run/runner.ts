/**
 * Runs an ordered list of phases: times each one, logs one JSON line per phase (name, status,
 * duration, detail), and rewrites state.json after each so an interrupted run leaves the truth.
 * A failing phase stops the list; `onFailure` (rollback) then runs, and `finally` phases (the
 * lifecycle hook) run on every exit path.
 */
import type { Logger } from '../core/logger.js'
import { type AgentError, isAgentError, toAgentError } from '../core/errors.js'
import type { PhaseRecord, PhaseStatus, RunState } from './state.js'

export interface PhaseResult {
  status?: Extract<PhaseStatus, 'ok' | 'skipped'>
  detail?: string
}

export interface Phase<C> {
  name: string
  run(ctx: C): Promise<PhaseResult | void>
}

export interface RunnerHooks<C> {
  ctx: C
  log: Logger
  state: RunState
  saveState(state: RunState): Promise<void>
  onFailure?(ctx: C, error: AgentError, phase: string): Promise<PhaseResult | void>
  /** always runs, after success or failure, with whether the main phases succeeded (and if not,
   * their failure: the run report sent before an ABANDON carries its evidence) */
  finally?(ctx: C, ok: boolean, failure: AgentError | undefined): Promise<PhaseResult | void>
}

const runOne = async <C>(h: RunnerHooks<C>, name: string, fn: () => Promise<PhaseResult | void>): Promise<AgentError | undefined> => {
  const rec: PhaseRecord = { name, status: 'not-run', durationMs: 0 }
  h.state.phases.push(rec)
  const t0 = performance.now()
  try {
    const r = (await fn()) ?? {}
    rec.status = r.status ?? 'ok'
    if (r.detail) rec.detail = r.detail
    return undefined
  } catch (e) {
    const err = toAgentError(e)
    rec.status = 'failed'
    rec.detail = err.message.split('\n')[0] ?? err.message
    return err
  } finally {
    rec.durationMs = Math.round(performance.now() - t0)
    const level = rec.status === 'failed' ? 'error' : 'info'
    h.log[level]({ phase: name, status: rec.status, durationMs: rec.durationMs, detail: rec.detail }, `${name}: ${rec.status}`)
    await h.saveState(h.state)
  }
}

export const runPhases = async <C>(phases: readonly Phase<C>[], h: RunnerHooks<C>): Promise<AgentError | undefined> => {
  let failure: AgentError | undefined
  let failedPhase = ''
  for (const p of phases) {
    failure = await runOne(h, p.name, () => p.run(h.ctx))
    if (failure) {
      failedPhase = p.name
      h.state.error = { code: failure.code, message: failure.message, remedy: failure.remedy, phase: p.name }
      if (!isAgentError(failure.cause) && failure.code === 'UNEXPECTED') h.log.error({ err: failure.cause }, 'unexpected error')
      break
    }
  }
  if (failure && h.onFailure) {
    const f = failure
    const onFailure = h.onFailure
    const rollbackErr = await runOne(h, 'rollback', () => onFailure(h.ctx, f, failedPhase))
    if (rollbackErr) h.log.error({ code: rollbackErr.code }, `rollback failed: ${rollbackErr.message}`)
  }
  if (h.finally) {
    const fin = h.finally
    const failed = failure
    const err = await runOne(h, 'complete', () => fin(h.ctx, failed === undefined, failed))
    if (err && !failure) {
      // the run fails on this alone (e.g. the lifecycle action could not be completed):
      // state.json must say why, as it does for any other phase
      failure = err
      h.state.error = { code: err.code, message: err.message, remedy: err.remedy, phase: 'complete' }
    }
  }
  return failure
}
