/**
 * Integration harness: a sandbox root, a fixture app repository, a local secrets file, the real
 * agent CLI (dist/bin.js) as a child process, and teardown that kills the sandbox's PM2 daemon
 * even when a test fails.
 */
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { sampleCmdlines } from './proc-sampler.js'

export const REPO = join(dirname(fileURLToPath(import.meta.url)), '../..')
export const BIN = join(REPO, 'dist/bin.js')
export const PM2_BIN = join(REPO, 'node_modules/pm2/bin/pm2')

/**
 * tap's process tracking patches child_process to put its NODE_OPTIONS hooks into every child's
 * environment, even an explicit one; they would follow the agent into PM2 and the services.
 * `env -i` starts the real program with exactly the environment given, as production would.
 */
const clean = (env: Record<string, string>, file: string, args: string[]): [string, string[]] =>
  ['/usr/bin/env', ['-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), file, ...args]]

export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const a = s.address()
      const port = typeof a === 'object' && a ? a.port : 0
      s.close(() => resolve(port))
    })
  })

/** A temp dir the unprivileged service user can traverse (mkdtemp makes 0700 dirs). */
export const sandboxDir = (prefix: string): string => {
  const d = mkdtempSync(join(tmpdir(), `${prefix}-`))
  chmodSync(d, 0o755)
  return d
}

/** Files of a small HTTP service: answers /health with its greeting, release and a
 * fingerprint of API_KEY; `crash: true` makes a release that exits at start. */
export const appFiles = (o: { port: number; greeting: string; crash?: boolean; manifest?: unknown; extra?: Record<string, string> }): Record<string, string> => ({
  'package.json': JSON.stringify({ name: 'app', version: '1.0.0', private: true, main: 'server.js', scripts: { start: 'node server.js' } }, null, 2),
  'package-lock.json': JSON.stringify({ name: 'app', version: '1.0.0', lockfileVersion: 3, requires: true, packages: { '': { name: 'app', version: '1.0.0' } } }, null, 2),
  'server.js': `
const http = require('node:http')
const { createHash } = require('node:crypto')
const { realpathSync } = require('node:fs')
const { basename } = require('node:path')
${o.crash ? "console.error('fatal: this release cannot start'); process.exit(1)" : ''}
const fp = v => v === undefined ? null : createHash('sha256').update(v).digest('hex')
http.createServer((req, res) => {
  if (req.url === '/env') { res.end(JSON.stringify(process.env)); return }
  res.setHeader('content-type', 'application/json')
  res.end(JSON.stringify({ greeting: ${JSON.stringify(o.greeting)}, release: basename(realpathSync(__dirname)), apiKey: fp(process.env.API_KEY), pid: process.pid, uid: process.getuid() }))
}).listen(Number(process.env.PORT), '127.0.0.1', () => console.log('listening'))
`,
  'bootstrap-agent.json': JSON.stringify(o.manifest ?? {
    version: 1,
    services: {
      app: {
        start: { script: 'server.js' },
        env: { PORT: String(o.port) },
        health: { url: `http://127.0.0.1:${o.port}/health`, timeoutSeconds: 8 },
        requiredEnv: ['API_KEY'],
      },
    },
  }, null, 2),
  ...o.extra,
})

export interface CliResult {
  code: number | null
  stdout: string
  stderr: string
  /** every /proc/<pid>/cmdline seen while the CLI ran */
  cmdlines: string[]
}

/** Runs the agent CLI; samples every process's command line meanwhile (leak proof). */
export const runCli = async (args: string[], env: Record<string, string> = {}): Promise<CliResult> => {
  const [file, argv] = clean({ PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/root', ...env }, process.execPath, [BIN, ...args])
  const sampler = sampleCmdlines()
  await sampler.ready
  const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', c => (stdout += c))
  child.stderr.on('data', c => (stderr += c))
  const code = await new Promise<number | null>(resolve => child.on('close', resolve))
  return { code, stdout, stderr, cmdlines: await sampler.stop() }
}

export interface StartedCli {
  pid: number
  /** the output so far */
  stdout(): string
  stderr(): string
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** SIGKILL to the agent's process group, its children with it (as systemd ends a unit) */
  killGroup(): void
}

/** The agent CLI as runCli starts it (`env -i` execs node: the pid is the agent's), in a process
 * group of its own, returned at once: for tests that kill it midway or watch it run. `entry`:
 * another build of the agent (the release artifact's dist/agent.mjs). */
export const startCli = (args: string[], env: Record<string, string> = {}, entry = BIN): StartedCli => {
  const [file, argv] = clean({ PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/root', ...env }, process.execPath, [entry, ...args])
  const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  const pid = child.pid
  if (pid === undefined) throw new Error('could not start the agent')
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', c => (stdout += c))
  child.stderr.on('data', c => (stderr += c))
  return {
    pid,
    stdout: () => stdout,
    stderr: () => stderr,
    // 'exit', not 'close': a killed agent's orphans may hold its pipes open
    exit: new Promise(resolve => child.on('exit', (code, signal) => resolve({ code, signal }))),
    killGroup() {
      try {
        process.kill(-pid, 'SIGKILL')
      } catch {
        // gone already
      }
    },
  }
}

export const pm2Home = (root: string): string => join(root, 'var/lib/bootstrap-agent/home/.pm2')

/** `pm2 <args>` against the sandbox daemon, as the user that owns PM2_HOME. */
export const pm2 = (root: string, args: string[]): string => {
  const home = pm2Home(root)
  const st = statSync(home)
  const [file, argv] = clean({ PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: dirname(home), PM2_HOME: home }, process.execPath, [PM2_BIN, ...args])
  const r = spawnSync(file, argv, { uid: st.uid, gid: st.gid, cwd: dirname(home), encoding: 'utf8' })
  return `${r.stdout}\n${r.stderr}`
}

export interface Pm2Proc { name: string; pid: number; pm2_env: { status: string; restart_time: number; username?: string } }
export const pm2List = (root: string): Pm2Proc[] => {
  const out = pm2(root, ['jlist'])
  const line = out.split('\n').reverse().find(l => l.startsWith('[{') || l.trim() === '[]') ?? '[]'
  return JSON.parse(line) as Pm2Proc[]
}

export const killPm2 = (root: string): void => {
  if (existsSync(pm2Home(root))) pm2(root, ['kill'])
}

export const removeSandbox = (dir: string, root?: string): void => {
  if (root) killPm2(root)
  rmSync(dir, { recursive: true, force: true })
}

export const writeSecrets = (file: string, data: unknown): void => {
  writeFileSync(file, JSON.stringify(data, null, 2), { mode: 0o600 })
}

export const getJson = async (url: string): Promise<Record<string, unknown>> => {
  const res = await fetch(url)
  return (await res.json()) as Record<string, unknown>
}
