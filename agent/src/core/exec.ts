/**
 * The Exec seam: the only module that imports execa. Every child process the agent starts goes
 * through `Exec.run`: no shell, an explicit environment (the agent's own environment is never
 * inherited, so nothing it holds can leak into repo code), a timeout, optional uid/gid so repo
 * code runs as the service user, and output delivered line by line to the caller (for the log).
 */
import { readdirSync, readFileSync } from 'node:fs'
import { constants } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { execa, type Options } from 'execa'
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
  /** the child's stdin is this file, opened by the agent: the child needs no access to the file
   * or its directory, and no byte of it passes through the agent */
  stdinFile?: string
  /** the child's stdout is this new file, created by the agent (exclusively, 0600, owned by the
   * agent) and written by the child through the descriptor it inherits; stdout is then not
   * buffered or split into lines */
  stdoutFile?: string
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

/** The descriptors behind stdinFile and stdoutFile: passed to the child as they are, so large
 * files never stream through the agent's own memory. */
const openStdio = async (opts: RunOptions): Promise<{ stdin?: FileHandle; stdout?: FileHandle; close(): Promise<void> }> => {
  const stdin = opts.stdinFile === undefined ? undefined : await open(opts.stdinFile, constants.O_RDONLY | constants.O_NOFOLLOW)
  const stdout = opts.stdoutFile === undefined
    ? undefined
    : await open(opts.stdoutFile, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600).catch(async (e: unknown) => {
      await stdin?.close()
      throw e
    })
  return {
    stdin, stdout,
    async close() {
      await stdin?.close()
      await stdout?.close()
    },
  }
}

export const createExec = (): Exec => ({
  async run(file, args, opts) {
    const fds = await openStdio(opts)
    try {
      return await runChild(file, args, opts, fds.stdin?.fd, fds.stdout?.fd)
    } finally {
      await fds.close()
    }
  },
})

/** execa hands an integer descriptor to spawn unchanged (its "native" stdio, lib/stdio/type.js),
 * but its types name only 0, 1 and 2 for stdin and stdout: widened here, in this one place. */
const descriptor = <K extends 'stdin' | 'stdout'>(fd: number): Options[K] => fd as unknown as Options[K]

const runChild = async (file: string, args: readonly string[], opts: RunOptions, stdinFd: number | undefined, stdoutFd: number | undefined): Promise<RunResult> => {
  const child = execa(file, [...args], {
    cwd: opts.cwd,
    env: opts.env,
    extendEnv: false,
    shell: false,
    reject: false,
    uid: opts.uid,
    gid: opts.gid,
    input: opts.input,
    stdin: stdinFd === undefined ? (opts.input === undefined ? 'ignore' : 'pipe') : descriptor<'stdin'>(stdinFd),
    ...(stdoutFd === undefined ? {} : { stdout: descriptor<'stdout'>(stdoutFd) }),
    stripFinalNewline: false,
    maxBuffer: 64 * 1024 * 1024,
  })
  const out = splitLines(opts.onLine, 'stdout')
  const err = splitLines(opts.onLine, 'stderr')
  child.stdout?.on('data', (c: Buffer) => out.push(c))
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
}
