/**
 * The Exec seam: the only module that imports execa. Every child process the agent starts goes
 * through `Exec.run`: no shell, an explicit environment (the agent's own environment is never
 * inherited, so nothing it holds can leak into repo code), a timeout, optional uid/gid so repo
 * code runs as the service user, and output delivered line by line to the caller (for the log).
 */
import { readdirSync, readFileSync } from 'node:fs'
import type { Readable } from 'node:stream'
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
  /** a file fed to stdin, opened by the agent: the child needs no access to it */
  stdinFile?: string
  /** takes stdout as a stream (large or binary output): then it is neither buffered nor split
   * into lines. Should it reject, the child's process tree is killed and `run` rejects with it. */
  stdout?: (stream: Readable) => Promise<void>
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

/**
 * `pid` and every process below it, from /proc (Linux; elsewhere just `pid`). Read when a timeout
 * fires, before anything is killed: once the child dies its children are reparented and lost.
 */
const processTree = (pid: number): number[] => {
  const children = new Map<number, number[]>()
  let entries: string[]
  try {
    entries = readdirSync('/proc')
  } catch {
    return [pid]
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue
    let stat: string
    try {
      stat = readFileSync(`/proc/${e}/stat`, 'utf8')
    } catch {
      continue // gone meanwhile
    }
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
    children.set(ppid, [...(children.get(ppid) ?? []), Number(e)])
  }
  const tree = [pid]
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i] ?? -1) ?? []))
  return tree
}

const signalAll = (pids: number[], signal: NodeJS.Signals) => {
  for (const pid of pids) {
    try {
      process.kill(pid, signal)
    } catch {
      // exited already
    }
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
      uid: opts.uid,
      gid: opts.gid,
      input: opts.input,
      stdin: opts.stdinFile !== undefined ? { file: opts.stdinFile } : opts.input === undefined ? 'ignore' : 'pipe',
      buffer: { stdout: opts.stdout === undefined },
      stripFinalNewline: false,
      maxBuffer: 64 * 1024 * 1024,
    })
    const out = splitLines(opts.onLine, 'stdout')
    const err = splitLines(opts.onLine, 'stderr')
    // a consumer that gives up (an archive refused halfway) must not leave the child blocked on a
    // full pipe until its timeout
    const consumed = opts.stdout && child.stdout
      ? opts.stdout(child.stdout).then(() => undefined, (e: unknown) => {
        if (child.pid !== undefined) signalAll(processTree(child.pid), 'SIGKILL')
        return { error: e }
      })
      : undefined
    if (!consumed) child.stdout?.on('data', (c: Buffer) => out.push(c))
    child.stderr?.on('data', (c: Buffer) => err.push(c))
    // The timeout ends the whole process tree, not only the child: a grandchild (an npm install
    // script, a build step) that outlives it keeps the output pipes open, and the run would wait
    // for it however long it takes. SIGTERM first, SIGKILL 5 s later for what is left.
    let timedOut = false
    let hardKill: NodeJS.Timeout | undefined
    const timer = setTimeout(() => {
      if (child.pid === undefined) return
      timedOut = true
      const tree = processTree(child.pid)
      signalAll(tree, 'SIGTERM')
      hardKill = setTimeout(() => signalAll(tree, 'SIGKILL'), 5000)
    }, opts.timeoutMs)
    const r = await child.finally(() => {
      clearTimeout(timer)
      // after a timeout, the SIGKILL still comes for whatever ignored the SIGTERM
      if (!timedOut) clearTimeout(hardKill)
    })
    out.flush()
    err.flush()
    const consumer = await consumed
    if (consumer) throw consumer.error
    if (r.failed && r.exitCode === undefined && !timedOut && !r.isTerminated) {
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
      timedOut,
    }
  },
})
