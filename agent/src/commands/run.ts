/**
 * `bootstrap-agent run`: take the lock, run the phases, roll back on failure, complete the
 * lifecycle hook on every path, write state.json, print the summary; returns the exit code.
 */
import { randomUUID } from 'node:crypto'
import { basename, dirname } from 'node:path'
import { removeStaleTemps } from '../core/atomic-write.js'
import { ExitCode, type AgentError } from '../core/errors.js'
import { acquireLock } from '../run/lock.js'
import { createLogger } from '../core/logger.js'
import { lockFilePath, stateFilePath } from '../core/paths.js'
import { AFTER_SUCCESS, RUN_PHASES } from '../run/pipeline.js'
import { rollback } from '../run/phases/rollback.js'
import { createRunReporter } from '../reports/run-reporter.js'
import { createScrubber } from '../secrets/redact.js'
import { runPhases } from '../run/runner.js'
import type { RunContext, Seams } from '../run/context.js'
import type { SettingsInput } from '../config/settings.js'
import { readState, writeState, type RunState } from '../run/state.js'
import type { Logger } from '../core/logger.js'
import { failureText, printSummary } from './summary.js'

export interface RunOptions {
  input: Omit<SettingsInput, 'tags'>
  root: string
  makeSeams: (log: Logger) => Seams
  out: NodeJS.WriteStream
  err: NodeJS.WritableStream
  pretty: boolean
}

export const runCommand = async (o: RunOptions): Promise<number> => {
  const scrubber = createScrubber()
  const runId = randomUUID()
  const levelFlag = o.input.flags['log-level']
  const level = typeof levelFlag === 'string' ? levelFlag : o.input.env['BOOTSTRAP_LOG_LEVEL'] ?? o.input.agentEnv['BOOTSTRAP_LOG_LEVEL'] ?? 'info'
  const log = createLogger({ level, file: `${o.root}/var/log/bootstrap-agent/agent.log`, stream: o.out, pretty: o.pretty, scrubber, base: { runId } })
  const reason = String(o.input.flags['reason'] ?? 'manual')
  const lock = await acquireLock(lockFilePath(o.root), { reason, command: 'run' })
  if (lock.brokeStale || lock.staleReason) log.warn({ holder: lock.brokeStale, why: lock.staleReason }, 'broke a stale lock left by an earlier run')
  // a run killed while rewriting state.json leaves its temp file; under the lock none is ours
  await removeStaleTemps(dirname(stateFilePath(o.root)), basename(stateFilePath(o.root)))
  // before this run replaces it: what root knows about the live release of an earlier agent
  const previousRun = await readState(stateFilePath(o.root)).catch(() => undefined)
  const t0 = performance.now()
  const state: RunState = {
    version: 1, runId, command: 'run', reason, mode: o.input.mode, pid: process.pid,
    startedAt: new Date().toISOString(), outcome: 'running', phases: [],
  }
  const ctx: RunContext = { seams: o.makeSeams(log), log, scrubber, input: o.input, ...(previousRun ? { previousRun } : {}) }
  const fill = () => {
    const s = ctx.settings
    if (s) Object.assign(state, { service: s.service, environment: s.environment, branch: s.branch, repository: s.repository })
    if (s?.reportLogGroup) state.reportLogGroup = s.reportLogGroup
    if (ctx.release) Object.assign(state, { commit: ctx.release.commit, release: ctx.release.id })
    if (ctx.liveRelease && ctx.liveRelease !== ctx.release?.id) state.previousRelease = ctx.liveRelease
    if (ctx.hook) state.lifecycle = ctx.hook.description
    if (ctx.warmPool) state.warmPool = ctx.warmPool
    if (ctx.url) state.url = ctx.url
    if (ctx.release) state.releaseFrom = ctx.release.reused ? 'live' : ctx.release.origin ?? 'source'
    if (ctx.cache) {
      const { location, lookup, commitFromPointer, published } = ctx.cache
      state.cache = { location, ...(lookup ? { lookup } : {}), ...(commitFromPointer ? { commitFromPointer } : {}), ...(published ? { published } : {}) }
    }
  }
  const saveState = async (st: RunState) => {
    fill()
    await writeState(stateFilePath(o.root), scrubber.scrubDeep(st))
  }
  /** the outcome, exit code and times, once the phases are done */
  const settled = (failure: AgentError | undefined): Pick<RunState, 'outcome' | 'exitCode' | 'finishedAt' | 'durationMs'> => ({
    outcome: failure ? (ctx.rolledBack ? 'rolled-back' : 'failed') : ctx.warmPool ? 'prepared' : 'success',
    exitCode: failure ? failure.exitCode : ExitCode.ok,
    finishedAt: new Date().toISOString(),
    durationMs: Math.round(performance.now() - t0),
  })
  const reporter = createRunReporter(ctx)
  let failure: AgentError | undefined
  try {
    await saveState(state)
    failure = await runPhases(RUN_PHASES, {
      ctx, log, state, saveState,
      onFailure: (c, err) => rollback(c, err),
      async finally(c, ok, failed) {
        // bad tags or settings fail `resolve` before the hook exists, but an instance waiting on
        // its launching action must still get its ABANDON: the hook needs only the identity
        if (!c.hook && c.identity) c.hook = c.seams.hook(c.settings, c.identity)
        if (!ok) {
          // Auto Scaling terminates the instance after the ABANDON, and its state and logs with
          // it: the report goes first, on its own short deadline (invariant 11)
          fill()
          await reporter.send({ ...state, ...settled(failed) }, failed, 'ABANDON')
        }
        if (!c.hook) return { status: 'skipped', detail: 'instance not identified: no lifecycle hook' }
        const r = await c.hook.complete(ok ? 'CONTINUE' : 'ABANDON')
        return r === 'completed' ? { detail: `${ok ? 'CONTINUE' : 'ABANDON'} sent (${c.hook.description})` } : { status: 'skipped', detail: `${r} (${c.hook.description})` }
      },
    })
    // begun in the background during install (pm2/ready.ts): a run that failed before `start`
    // lets it finish rather than exit under a half-spawned daemon; its error was start's to report
    await ctx.pm2Ready?.catch(() => undefined)
    if (!failure) {
      for (const phase of AFTER_SUCCESS) {
        const after = await runPhases([phase], { ctx, log, state, saveState })
        // an unpublished release or an extra release on disk: the service is fine, so is the run
        if (after) log.warn({ code: after.code }, `${phase.name} failed: ${after.message}`)
      }
    }
    Object.assign(state, settled(failure))
    await saveState(state)
    // a failed run's report went before its ABANDON; this is everyone else's
    await reporter.send(state, failure)
    if (failure) log.error({ code: failure.code, remedy: failure.remedy, outcome: state.outcome }, failure.message)
    log.info({ summary: { ...state, phases: undefined }, phases: state.phases.map(p => `${p.name}:${p.status}:${p.durationMs}ms`) }, `run finished: ${state.outcome}`)
    if (o.pretty) printSummary(o.out, scrubber.scrubDeep(state))
    // last, so that the verdict is what `systemctl status bootstrap-agent` shows (the journal's
    // last lines). A message of several lines (a health failure carries the service's log tail)
    // ends with its first line again: the tail would push it out of those lines otherwise.
    if (failure) o.err.write(scrubber.scrub(failureText(state.outcome, failure)))
    return failure ? failure.exitCode : ExitCode.ok
  } finally {
    await lock.release()
    log.flush()
  }
}
