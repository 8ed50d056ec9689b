/**
 * The Pm2 seam: PM2's CLI run as the service user with its own PM2_HOME. The environment passed
 * is minimal on purpose: PM2 copies the CLI's environment into every app's stored env (dump.pm2,
 * `pm2 env`), so nothing but PATH/HOME/PM2_HOME may be in it. Reading the process list is the
 * exception: it asks the running daemon over its socket (pm2/rpc.ts), which changes nothing.
 */
import { stat } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { lstatBeneath } from '../core/beneath.js'
import { AgentError } from '../core/errors.js'
import type { Exec } from '../core/exec.js'
import { readUntrusted } from '../core/untrusted-files.js'
import { pm2File, type Pm2Home } from './home.js'
import { askDaemon } from './rpc.js'

export interface Pm2Process {
  name: string
  pmId: number
  pid: number
  status: string
  restarts: number
  uptimeSince: number | undefined
}

export interface Pm2 {
  list(): Promise<Pm2Process[]>
  /** start the ecosystem's apps; `recreate` deletes the named app first (its definition changed) */
  start(ecosystemFile: string, appName: string, recreate: boolean): Promise<void>
  /** graceful reload of the apps in the ecosystem (cluster: zero downtime; fork: restart) */
  reload(ecosystemFile: string): Promise<void>
  delete(appName: string): Promise<void>
  /** a daemon answering on PM2_HOME: the one running, else a new one (`pm2 ping` spawns it) */
  ensureDaemon(): Promise<void>
  /** graceful stop (SIGINT, then SIGKILL after the app's kill_timeout); returns once it exited */
  stop(appName: string): Promise<void>
  save(): Promise<void>
  /** stops the daemon and every app it runs */
  kill(): Promise<void>
}

/**
 * Whether PM2's dump (what resurrection at boot starts) already holds `appName` as defined by
 * `ecosystemFile`: the dump lists the app and was written after the ecosystem file. A reload of
 * an unchanged definition (a new release behind `current`, or new secrets in the env file) leaves
 * that dump right, so `pm2 save` (a CLI process, ~150 ms) is skipped; a run killed between a
 * `pm2 start` and its save leaves an ecosystem file newer than the dump, so the next run saves.
 */
export const dumpHolds = async (h: Pm2Home, ecosystemFile: string, appName: string): Promise<boolean> => {
  try {
    // the dump is in PM2_HOME, the service user's: read as that user's file, never through a link
    // or from a FIFO (core/untrusted-files.ts); anything else is no dump of ours
    const f = pm2File(h, 'dump.pm2')
    const [dump, eco] = await Promise.all([lstatBeneath(f.dir, f.rel), stat(ecosystemFile)])
    if (!dump || dump.mtimeMs <= eco.mtimeMs) return false
    const apps: unknown = JSON.parse((await readUntrusted(f, DUMP_MAX_BYTES)) ?? '')
    return Array.isArray(apps) && apps.some(a => typeof a === 'object' && a !== null && (a as { name?: unknown }).name === appName)
  } catch {
    // no dump, no ecosystem file, a dump PM2 left half-written or one refused: save
    return false
  }
}

/** a dump lists the apps and their environments: far below this */
const DUMP_MAX_BYTES = 64 * 1024 * 1024

export interface Pm2Options {
  exec: Exec
  pm2Home: string
  home: string
  /** the service user; undefined only when the agent is not root (PM2 then runs as the agent) */
  user: { uid: number; gid: number } | undefined
  timeoutMs?: number
  onLine?: (stream: 'stdout' | 'stderr', line: string) => void
}

const require = createRequire(import.meta.url)
export const PM2_BIN = join(dirname(require.resolve('pm2/package.json')), 'bin', 'pm2')

export const pm2Env = (home: string, pm2Home: string): Record<string, string> => ({
  PATH: `${dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`,
  HOME: home,
  PM2_HOME: pm2Home,
  PM2_DISABLE_VERSION_CHECK: 'true',
  LANG: 'C.UTF-8',
})

const parseList = (stdout: string): Pm2Process[] => {
  // the daemon's first start prints "[PM2] Spawning..." lines before the JSON line
  const line = stdout.split('\n').reverse().find(l => l.startsWith('[{') || l.trim() === '[]')
  if (line === undefined) return []
  return toProcesses(JSON.parse(line))
}

/** `getMonitorData`'s answer (what `pm2 jlist` prints) -> the fields the agent reads */
const toProcesses = (data: unknown): Pm2Process[] => {
  if (!Array.isArray(data)) return []
  return data.map((p: Record<string, unknown>): Pm2Process => {
    const env = (typeof p['pm2_env'] === 'object' && p['pm2_env'] !== null ? p['pm2_env'] : {}) as Record<string, unknown>
    return {
      name: String(p['name']),
      pmId: Number(p['pm_id']),
      pid: Number(p['pid']),
      status: String(env['status']),
      restarts: Number(env['restart_time'] ?? 0) + Number(env['unstable_restarts'] ?? 0),
      uptimeSince: typeof env['pm_uptime'] === 'number' ? env['pm_uptime'] : undefined,
    }
  })
}

/**
 * What PM2 said went wrong, on one line: its error lines (`[PM2][ERROR] ...`, `Error: EACCES ...`)
 * rather than the stack frames and the "Node.js v20" footer that end its output.
 */
export const pm2ErrorSummary = (text: string, max = 4): string => {
  const lines = text
    .replace(/\u001b\[[0-9;]*m/g, '')
    .split('\n')
    .map(l => l.trim())
    .filter(l => l !== '' && !/^at /.test(l) && !/^Node\.js v\d/.test(l) && !/^[{}]$/.test(l))
  const errors = lines.filter(l => /error|denied|EACCES|ENOENT|EPERM|ENOSPC|EROFS/i.test(l))
  return (errors.length > 0 ? errors.slice(0, max) : lines.slice(-max)).join(' | ')
}

export const createPm2 = (o: Pm2Options): Pm2 => {
  const timeoutMs = o.timeoutMs ?? 120_000
  const h: Pm2Home = { home: o.home, pm2Home: o.pm2Home, owner: o.user?.uid ?? process.getuid?.() ?? 0 }
  const hung = (what: string, said = '') => new AgentError(`pm2 ${what} gave no answer within ${Math.round(timeoutMs / 1000)} s (is the PM2 daemon hung?)${said ? `: ${said}` : ''}`, {
    code: 'PM2_FAILED',
    remedy: `inspect with: sudo -u <service user> PM2_HOME=${o.pm2Home} pm2 logs; a hung daemon: kill it (its pid is in ${o.pm2Home}/pm2.pid) and run again; a slow one: raise --pm2-timeout (BOOTSTRAP_PM2_TIMEOUT)`,
  })
  const run = async (args: string[], what: string) => {
    const r = await o.exec.run(process.execPath, [PM2_BIN, ...args], {
      env: pm2Env(o.home, o.pm2Home),
      cwd: o.home,
      timeoutMs,
      ...(o.user ?? {}),
      ...(o.onLine ? { onLine: o.onLine } : {}),
    })
    if (r.exitCode !== 0) {
      const said = pm2ErrorSummary(r.stderr || r.stdout)
      if (r.timedOut) throw hung(what, said)
      throw new AgentError(`pm2 ${what} failed (exit ${r.exitCode}): ${said}`, {
        code: 'PM2_FAILED',
        remedy: `inspect with: sudo -u <service user> PM2_HOME=${o.pm2Home} pm2 logs`,
      })
    }
    return r
  }
  return {
    async list() {
      // the daemon's own answer, without a CLI process (~180 ms each; pm2/rpc.ts); the CLI only
      // when no daemon answers there, as before (it spawns one, which then has no apps)
      const a = await askDaemon(h, 'getMonitorData', timeoutMs)
      if (a.kind === 'answer') return toProcesses(a.value)
      if (a.kind === 'timeout') throw hung('jlist')
      const r = await run(['jlist'], 'jlist')
      return parseList(r.stdout)
    },
    async start(eco, appName, recreate) {
      if (recreate) await run(['delete', appName], `delete ${appName}`).catch(() => undefined)
      await run(['start', eco], 'start')
    },
    async reload(eco) {
      // --force: a `pm2 reload` killed midway leaves PM2_HOME/reload.lock, and every reload in the
      // next 30 s would fail "Reload already in progress". The run lock already keeps our reloads
      // apart; the daemon itself still refuses to reload a process twice at once.
      await run(['reload', eco, '--update-env', '--force'], 'reload')
    },
    async delete(appName) {
      await run(['delete', appName], `delete ${appName}`)
    },
    async stop(appName) {
      await run(['stop', appName], `stop ${appName}`)
    },
    async ensureDaemon() {
      const a = await askDaemon(h, 'getMonitorData', timeoutMs)
      if (a.kind === 'answer') return
      // connected but silent: a hung daemon, which `pm2 ping` would wait on for a second timeout
      if (a.kind === 'timeout') throw hung('ping')
      await run(['ping'], 'ping')
    },
    async save() {
      await run(['save', '--force'], 'save')
    },
    async kill() {
      await run(['kill'], 'kill')
    },
  }
}
