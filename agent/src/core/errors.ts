/**
 * Typed errors that carry policy: a stable `code`, the exit code the CLI maps it to, whether a
 * retry may help, and a one-line remedy for the person reading it. Messages never carry secret
 * values: callers quote only names, paths and validated, non-secret inputs.
 */
import type { Evidence } from './evidence.js'

export const ExitCode = {
  ok: 0,
  failed: 1,
  badInput: 2,
  locked: 3,
} as const
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode]

export interface AgentErrorOptions {
  /** stable machine-readable code, e.g. `CONFIG_INVALID`, `GIT_FETCH_FAILED` */
  code: string
  /** what the user should do about it, one line */
  remedy: string
  exitCode?: ExitCode
  retryable?: boolean
  cause?: unknown
  /** what the failing step printed or left behind, for the run report (core/evidence.ts) */
  evidence?: readonly Evidence[]
}

export class AgentError extends Error {
  readonly code: string
  readonly remedy: string
  readonly exitCode: ExitCode
  readonly retryable: boolean
  /** filled where the error is made, or by the caller that holds the output (git: its stderr) */
  readonly evidence: Evidence[]

  constructor(message: string, opts: AgentErrorOptions) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.name = 'AgentError'
    this.code = opts.code
    this.remedy = opts.remedy
    this.exitCode = opts.exitCode ?? ExitCode.failed
    this.retryable = opts.retryable ?? false
    this.evidence = [...(opts.evidence ?? [])]
  }
}

/** Bad configuration or input: exit 2, nothing was changed. */
export class ConfigError extends AgentError {
  constructor(message: string, remedy: string, code = 'CONFIG_INVALID') {
    super(message, { code, remedy, exitCode: ExitCode.badInput })
    this.name = 'ConfigError'
  }
}

/** Another run holds the lock: exit 3. */
export class LockHeldError extends AgentError {
  constructor(message: string, remedy: string) {
    super(message, { code: 'LOCK_HELD', remedy, exitCode: ExitCode.locked })
    this.name = 'LockHeldError'
  }
}

export const isAgentError = (e: unknown): e is AgentError => e instanceof AgentError

/** Node's system errors (`ENOENT`, `EEXIST`, ...) without casting to any. */
export const errnoCode = (e: unknown): string | undefined => {
  if (typeof e === 'object' && e !== null && 'code' in e) {
    const code = (e as { code: unknown }).code
    return typeof code === 'string' ? code : undefined
  }
  return undefined
}

export const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e))

/** Anything thrown becomes an AgentError: known errors keep their policy; anything else is a bug
 * or unexpected I/O failure, exit 1. */
export const toAgentError = (e: unknown): AgentError =>
  isAgentError(e)
    ? e
    : new AgentError(messageOf(e), { code: 'UNEXPECTED', remedy: 'run again with --log-level debug and report it if it persists', cause: e })
