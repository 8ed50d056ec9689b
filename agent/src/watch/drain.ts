/**
 * The drain: what happens on this instance before it goes away (termination, spot interruption).
 * Steps are data, run in order; unlike a run's phases, a failed step does not stop the next one
 * (a failing pre-stop command must not keep the service from being stopped gracefully, and the
 * lifecycle hook is answered whatever happened: see watch/loop.ts).
 *
 *   stop-run   a run in progress (boot, SSM, warm pool) is stopped first, so it cannot start the
 *              service again behind the drain's back; the instance is going away, and a killed
 *              run is what crash consistency already covers
 *   pre-stop   the manifest's preStop argv: as the service user, in the live release's service
 *              directory, with the service's environment loaded the way PM2 gives it to the
 *              service (env-preload + run-with-env), within --pre-stop-timeout
 *   stop       `pm2 stop <service>`: SIGINT, then SIGKILL after the app's kill_timeout (the
 *              manifest's killTimeoutMs); PM2 answers once the process exited, so in-flight
 *              requests of a service that closes its server on SIGINT finish first
 *   flush-logs fsync of the service's and the agent's log files, so what the service wrote while
 *              stopping survives the shutdown that follows
 *
 * The service user can write its logs, its releases, PM2_HOME and the env file's directory, and a
 * compromised service knows a drain is coming (it gets SIGINT): every read and fsync there goes
 * through core/untrusted-files.ts (no link followed, a FIFO never waited on), so nothing it
 * planted can stall the drain past the terminating hook's timeout or show root's files in
 * watch.json. PM2 is only ever driven as the service user.
 */
import { readdir } from 'node:fs/promises'
import { basename, join, relative } from 'node:path'
import { agentFile } from '../secrets/agent-files.js'
import { ENV_FILE_MAX_BYTES, parseEnv } from '../secrets/env-file.js'
import { ConfigError, messageOf, toAgentError } from '../core/errors.js'
import { isRefused } from '../core/beneath.js'
import { readUntrusted, syncUntrusted } from '../core/untrusted-files.js'
import type { Exec } from '../core/exec.js'
import type { LockHolder } from '../run/lock.js'
import type { Logger } from '../core/logger.js'
import { loadServiceSpec, type ServiceSpec } from '../config/manifest.js'
import { pathsFor, stateFilePath, type Paths } from '../core/paths.js'
import { pm2Env, type Pm2 } from '../pm2/cli.js'
import type { Scrubber } from '../secrets/redact.js'
import { ensureServiceUser, type ServiceUser } from '../core/service-user.js'
import type { WatchSettings } from '../config/settings.js'
import { readState } from '../run/state.js'
import { readCurrent } from '../releases/releases.js'
import type { DrainRecord, DrainStepStatus } from './state.js'

export interface DrainSeams {
  exec: Exec
  pm2: (p: Paths, user: ServiceUser | undefined, timeoutMs: number) => Pm2
  /** the live holder of the run lock, if any */
  runInProgress: () => Promise<LockHolder | undefined>
  /** process.kill */
  signal: (pid: number, sig: NodeJS.Signals) => void
  /** process.kill(pid, 0) succeeded */
  isAlive: (pid: number) => boolean
  sleep: (ms: number) => Promise<void>
}

/** What is live on this box, as far as it could be found out. */
export interface Deployed {
  service: string
  paths: Paths
  /** the service directory inside the release `current` points at (undefined: none is live) */
  serviceDir?: string
  spec?: ServiceSpec
  user?: ServiceUser
  /** why spec or user could not be read */
  problem?: string
}

export interface DrainContext {
  settings: WatchSettings
  log: Logger
  scrubber: Scrubber
  seams: DrainSeams
  deployed: Deployed | undefined
}

interface StepResult {
  status?: Exclude<DrainStepStatus, 'failed'>
  detail?: string
}

interface Step {
  name: string
  run(c: DrainContext): Promise<StepResult>
}

/** The service the last run deployed (or the one named by --service), its live release and user. */
export const locateDeployed = async (s: WatchSettings, exec: Exec): Promise<Deployed | undefined> => {
  const service = s.service ?? (await readState(stateFilePath(s.root)).catch(() => undefined))?.service
  if (service === undefined) return undefined
  const paths = pathsFor(s.root, service)
  const d: Deployed = { service, paths }
  // the release id from `current` (root's link), never a path resolved through releases/
  const live = await readCurrent(paths.serviceDir)
  if (live === undefined) return d
  const release = join(paths.releasesDir, live)
  try {
    d.user = await ensureServiceUser(exec, s.serviceUser, { create: false })
    d.spec = await loadServiceSpec({ dir: release, owner: d.user.uid }, s.manifestFile, service)
    d.serviceDir = join(release, d.spec.path)
  } catch (e) {
    d.problem = messageOf(e)
  }
  return d
}

const nothingDeployed = (c: DrainContext): StepResult => ({ status: 'skipped', detail: `nothing deployed under ${c.settings.root}` })

const RUN_STOP_WAIT_MS = 10_000

const stopRun: Step = {
  name: 'stop-run',
  async run(c) {
    const holder = await c.seams.runInProgress()
    if (!holder) return { status: 'skipped', detail: 'no run in progress' }
    c.seams.signal(holder.pid, 'SIGTERM')
    for (let waited = 0; waited < RUN_STOP_WAIT_MS; waited += 200) {
      await c.seams.sleep(200)
      if (!(await c.seams.runInProgress())) return { detail: `stopped run pid ${holder.pid} (reason ${holder.reason}, since ${holder.startedAt}) with SIGTERM` }
    }
    c.seams.signal(holder.pid, 'SIGKILL')
    return { detail: `run pid ${holder.pid} (reason ${holder.reason}) ignored SIGTERM for ${RUN_STOP_WAIT_MS / 1000} s: SIGKILL` }
  },
}

const preStop: Step = {
  name: 'pre-stop',
  async run(c) {
    const d = c.deployed
    if (!d) return nothingDeployed(c)
    if (d.problem) throw new ConfigError(`the live release of ${d.service} could not be read: ${d.problem}`, 'check `bootstrap-agent status`; the drain goes on without the pre-stop command', 'DRAIN_PRESTOP_FAILED')
    if (!d.spec || !d.serviceDir) return { status: 'skipped', detail: `no live release of ${d.service}` }
    const argv = d.spec.preStop
    if (!argv) return { status: 'skipped', detail: 'the manifest declares no preStop' }
    // the command's output may echo its environment: mask the env file's values in the log
    const envText = d.user && await readUntrusted({ dir: d.paths.envDir, rel: basename(d.paths.envFile), owner: d.user.uid }, ENV_FILE_MAX_BYTES).catch(() => undefined)
    if (envText !== undefined) c.scrubber.add(Object.values(parseEnv(envText, d.paths.envFile)))
    const timeoutMs = c.settings.preStopTimeoutMs
    const r = await c.seams.exec.run(process.execPath, ['--import', agentFile('env-preload.js'), agentFile('run-with-env.js'), ...argv], {
      cwd: d.serviceDir,
      env: { ...pm2Env(d.paths.home, d.paths.pm2Home), ...d.spec.env, BOOTSTRAP_ENV_FILE: d.paths.envFile, BOOTSTRAP_SERVICE: d.service },
      timeoutMs,
      ...(d.user?.switchTo ?? {}),
      onLine: (stream, line) => c.log.info({ drain: 'pre-stop', stream }, line),
    })
    const cmd = JSON.stringify(argv)
    if (r.timedOut) throw new ConfigError(`preStop ${cmd} did not finish within ${timeoutMs / 1000} s`, 'make it faster, or raise --pre-stop-timeout (BOOTSTRAP_PRE_STOP_TIMEOUT); keep the whole drain inside the two-minute spot notice', 'DRAIN_PRESTOP_TIMEOUT')
    if (r.exitCode !== 0) {
      const last = c.scrubber.scrub((r.stderr || r.stdout).trim().split('\n').slice(-1)[0] ?? '')
      throw new ConfigError(`preStop ${cmd} exited ${r.exitCode}${last ? `: ${last}` : ''}`, `fix the preStop command in the manifest (it runs as ${d.user?.name ?? 'the service user'} in ${d.serviceDir})`, 'DRAIN_PRESTOP_FAILED')
    }
    return { detail: `${cmd} exited 0` }
  },
}


/** Whether PM2's daemon runs, from its pid file (in PM2_HOME, the service user's). A pid file
 * that is not a plain file of the service user cannot tell: then PM2 is asked. */
const pm2Alive = async (p: Paths, user: ServiceUser, isAlive: DrainSeams['isAlive']): Promise<boolean> => {
  let text: string | undefined
  try {
    text = await readUntrusted({ dir: p.home, rel: join(relative(p.home, p.pm2Home), 'pm2.pid'), owner: user.uid }, 64)
  } catch (e) {
    if (isRefused(e)) return true
    throw e
  }
  const pid = Number((text ?? '').trim())
  return Number.isSafeInteger(pid) && pid > 0 && isAlive(pid)
}

const stopService: Step = {
  name: 'stop',
  async run(c) {
    const d = c.deployed
    if (!d) return nothingDeployed(c)
    // PM2 runs as the service user, always: PM2_HOME is that user's, and a PM2 CLI as root there
    // would read its configuration, or start a root daemon the service could then command
    if (!d.user) throw new ConfigError(`the service user of ${d.service} could not be found (${d.problem ?? 'unknown'}); PM2 is never run as root`, `check that user ${c.settings.serviceUser} exists`, 'DRAIN_STOP_FAILED')
    // a PM2 call without a daemon would start one: nothing runs, so nothing to stop
    if (!(await pm2Alive(d.paths, d.user, c.seams.isAlive))) return { status: 'skipped', detail: `PM2 is not running (PM2_HOME=${d.paths.pm2Home})` }
    const killTimeoutMs = d.spec?.killTimeoutMs ?? 5000
    // pm2 stop answers once the app exited: its kill timeout, plus --pm2-timeout for PM2 itself,
    // at most 30 s of it, so a hung daemon cannot eat the two-minute spot notice
    const pm2 = c.seams.pm2(d.paths, d.user, killTimeoutMs + Math.min(c.settings.pm2TimeoutMs, 30_000))
    const procs = (await pm2.list()).filter(p => p.name === d.service)
    if (procs.length === 0) return { status: 'skipped', detail: `${d.service} is not a PM2 app` }
    if (procs.every(p => p.status === 'stopped')) return { status: 'skipped', detail: `${d.service} is stopped already` }
    await pm2.stop(d.service)
    return { detail: `${d.service} stopped gracefully (SIGINT, SIGKILL after kill_timeout ${killTimeoutMs} ms; ${procs.length} process${procs.length > 1 ? 'es' : ''})` }
  },
}

/** fsync of every regular file in `dir`; links, FIFOs and the rest are passed over unopened
 * (a FIFO opened for reading would wait for a writer: the drain would hang) */
const syncFiles = async (dir: string): Promise<number> => {
  const names = await readdir(dir).catch(() => [] as string[])
  let n = 0
  for (const name of names) if (await syncUntrusted({ dir, rel: name }).catch(() => false)) n += 1
  return n
}

const flushLogs: Step = {
  name: 'flush-logs',
  async run(c) {
    c.log.flush()
    const dirs = [join(c.settings.root, 'var/log/bootstrap-agent'), ...(c.deployed ? [c.deployed.paths.appLogDir] : [])]
    let n = 0
    for (const dir of dirs) n += await syncFiles(dir)
    return { detail: `${n} log file${n === 1 ? '' : 's'} synced to disk (${dirs.join(', ')})` }
  },
}

export const DRAIN_STEPS: readonly Step[] = [stopRun, preStop, stopService, flushLogs]

/** Runs every step, recording each into `record` (and saving it) as it finishes. */
export const runDrain = async (c: DrainContext, record: DrainRecord, save: () => Promise<void>, steps: readonly Step[] = DRAIN_STEPS): Promise<void> => {
  for (const step of steps) {
    const t0 = performance.now()
    let status: DrainStepStatus
    let detail: string | undefined
    try {
      const r = await step.run(c)
      status = r.status ?? 'ok'
      detail = r.detail
    } catch (e) {
      const err = toAgentError(e)
      status = 'failed'
      detail = `[${err.code}] ${err.message.split('\n')[0] ?? ''}`
    }
    const durationMs = Math.round(performance.now() - t0)
    record.steps.push({ name: step.name, status, durationMs, ...(detail === undefined ? {} : { detail: c.scrubber.scrub(detail) }) })
    c.log[status === 'failed' ? 'error' : 'info']({ drain: step.name, status, durationMs, detail }, `drain ${step.name}: ${status}`)
    await save()
  }
  record.outcome = record.steps.some(s => s.status === 'failed') ? 'failed' : 'ok'
}
