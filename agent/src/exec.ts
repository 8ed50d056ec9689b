/**
 * The Exec seam: the only module that imports execa. Every child process the agent starts goes
 * through `Exec.run`: no shell, an explicit environment (the agent's own environment is never
 * inherited, so nothing it holds can leak into repo code), a timeout, optional uid/gid so repo
 * code runs as the service user, and output delivered line by line to the caller (for the log).
 */
import { execa } from 'execa'
import { AgentError } from './errors.js'

export interface RunOptions {
  cwd?: string
  /** the complete environment of the child; nothing else is inherited */
  env: Record<string, string>
  timeoutMs: number
  uid?: number
  gid?: number
  /** each line of stdout/stderr as it arrives */
  onLine?: (stream: 'stdout' | 'stderr', line: string) => void
  /** text fed to stdin (never argv) */
  input?: string
}

export interface RunResult {
  exitCode: number
  stdout: string
  stderr: string
  timedOut: boolean
}

export interface Exec {
  /** Runs `file args`; resolves with the result whatever the exit code, rejects only when the
   * program cannot be started at all. */
  run(file: string, args: readonly string[], opts: RunOptions): Promise<RunResult>
}

const splitLines = (onLine: RunOptions['onLine'], stream: 'stdout' | 'stderr') => {
  let rest = ''
  return {
    push(chunk: Buffer | string) {
      if (!onLine) return
      rest += chunk.toString()
      const lines = rest.split('\n')
      rest = lines.pop() ?? ''
      for (const l of lines) onLine(stream, l)
    },
    flush() {
      if (onLine && rest) onLine(stream, rest)
      rest = ''
    },
  }
}

export const createExec = (): Exec => ({
  async run(file, args, opts) {
    const child = execa(file, [...args], {
      cwd: opts.cwd,
      env: opts.env,
      extendEnv: false,
      shell: false,
      reject: false,
      timeout: opts.timeoutMs,
      killSignal: 'SIGTERM',
      forceKillAfterDelay: 5000,
      uid: opts.uid,
      gid: opts.gid,
      input: opts.input,
      stdin: opts.input === undefined ? 'ignore' : 'pipe',
      stripFinalNewline: false,
      maxBuffer: 64 * 1024 * 1024,
    })
    const out = splitLines(opts.onLine, 'stdout')
    const err = splitLines(opts.onLine, 'stderr')
    child.stdout?.on('data', (c: Buffer) => out.push(c))
    child.stderr?.on('data', (c: Buffer) => err.push(c))
    const r = await child
    out.flush()
    err.flush()
    if (r.failed && r.exitCode === undefined && !r.timedOut && !r.isTerminated) {
      throw new AgentError(`could not start "${file}": ${r.shortMessage ?? r.message}`, {
        code: 'EXEC_START_FAILED',
        remedy: `check that "${file}" is installed and on PATH for the agent`,
        cause: r.cause,
      })
    }
    return {
      exitCode: r.exitCode ?? -1,
      stdout: String(r.stdout ?? ''),
      stderr: String(r.stderr ?? ''),
      timedOut: r.timedOut === true,
    }
  },
})
