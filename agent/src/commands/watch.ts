/**
 * `bootstrap-agent watch`: the long-running half of an instance's life (bootstrap-agent-watch
 * .service). Wires the real seams into watch/loop.ts: an IMDSv2 session that renews its token,
 * the drain (watch/drain.ts) with real PM2 and child processes, the terminating lifecycle hook, and
 * `run --reason warm-pool` as a child process (same lock as any run). Returns 0 once SIGTERM or
 * SIGINT stopped it; a drain in progress finishes first.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { createAwsLifecycleHook } from '../aws/lifecycle-hook.js'
import { forbidImdsV1 } from '../aws/seams.js'
import { locateDeployed, runDrain, type DrainSeams } from '../watch/drain.js'
import { ConfigError, ExitCode, messageOf } from '../core/errors.js'
import { createExec } from '../core/exec.js'
import { createImdsSession } from '../aws/imds-session.js'
import { acquireLock, readLockHolder } from '../run/lock.js'
import { createLogger } from '../core/logger.js'
import { lockFilePath, stateFilePath } from '../core/paths.js'
import { createPm2 } from '../pm2/cli.js'
import { createCloudWatchReportSink } from '../aws/report-sink.js'
import { createDrainReporter } from '../reports/drain-reporter.js'
import { readState } from '../run/state.js'
import { createScrubber } from '../secrets/redact.js'
import { resolveWatchSettings, type SettingsInput } from '../config/settings.js'
import { watchLoop } from '../watch/loop.js'
import { readWatchState, watchLockFilePath, watchStateFilePath, writeWatchState } from '../watch/state.js'

export interface WatchOptions {
  input: Omit<SettingsInput, 'tags'>
  out: NodeJS.WriteStream
  pretty: boolean
}

/** a run started by the watch gets as long as systemd gives a boot run (TimeoutStartSec=45min) */
const RUN_TIMEOUT_MS = 45 * 60_000

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

export const watchCommand = async (o: WatchOptions): Promise<number> => {
  if (o.input.mode === 'local') {
    throw new ConfigError('watch polls the instance metadata service (IMDSv2), which local mode has none of', 'run it on an EC2 instance (bootstrap-agent-watch.service does), without --local', 'WATCH_NEEDS_AWS')
  }
  for (const flag of ['dry-run', 'reason'] as const) {
    if (o.input.flags[flag] !== undefined) throw new ConfigError(`watch does not take --${flag}`, 'run bootstrap-agent watch --help', 'CLI_INVALID')
  }
  const s = resolveWatchSettings(o.input)
  const scrubber = createScrubber()
  const log = createLogger({ level: s.logLevel, file: join(s.root, 'var/log/bootstrap-agent/agent.log'), stream: o.out, pretty: o.pretty, scrubber, base: { command: 'watch' } })
  const env = process.env
  forbidImdsV1(env)
  env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true'
  // two watches would drain twice: exit 3 while another one runs
  const lock = await acquireLock(watchLockFilePath(s.root), { reason: 'watch', command: 'watch' })
  const exec = createExec()
  const controller = new AbortController()
  const onSignal = (signal: NodeJS.Signals) => {
    log.info({ signal }, `${signal}: the watch stops after the current poll (a drain in progress finishes first)`)
    controller.abort()
  }
  process.once('SIGTERM', onSignal)
  process.once('SIGINT', onSignal)

  const drainSeams: DrainSeams = {
    exec,
    pm2: (p, user, timeoutMs) => createPm2({ exec, pm2Home: p.pm2Home, home: p.home, user: user?.switchTo, timeoutMs }),
    runInProgress: () => readLockHolder(lockFilePath(s.root)),
    signal: (pid, sig) => process.kill(pid, sig),
    isAlive,
    sleep: ms => sleep(ms),
  }
  const file = watchStateFilePath(s.root)
  // the entry the agent was started with (dist/bin.js, or the release's dist/agent.mjs)
  const entry = process.argv[1] ?? ''
  const childEnv = Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => typeof e[1] === 'string'))
  try {
    await watchLoop({
      settings: s,
      log,
      imds: createImdsSession({ tokenTtlS: s.imdsTokenTtlS }),
      signal: controller.signal,
      now: () => new Date(),
      sleep: (ms, signal) => sleep(ms, undefined, { signal }).catch(() => undefined),
      bootId: (await readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => '')).trim(),
      store: { read: () => readWatchState(file), write: st => writeWatchState(file, scrubber.scrubDeep(st)) },
      async drain(record, save) {
        const deployed = await locateDeployed(s, exec).catch((e: unknown) => {
          log.error({ error: messageOf(e) }, 'the deployed service could not be located; draining what can be')
          return undefined
        })
        await runDrain({ settings: s, log, scrubber, seams: drainSeams, deployed }, record, save)
      },
      terminatingHook: (id, awaitTransition) => createAwsLifecycleHook({
        transition: 'terminating',
        instanceId: id.instanceId,
        region: id.region,
        awaitTransition,
        // IMDS says Terminated: discovery waits (30 s at most) for Auto Scaling to agree
        ...(awaitTransition ? { lifecycleState: 'Terminated' } : {}),
        ...(s.heartbeatIntervalMs > 0 ? { heartbeatMs: s.heartbeatIntervalMs } : {}),
        retry: { totalMs: s.awsTimeoutMs },
        log,
      }),
      reportDrain: createDrainReporter({
        settings: s,
        log,
        scrubber,
        lastRun: () => readState(stateFilePath(s.root)),
        sink: (group, region) => createCloudWatchReportSink({ group, region, log }),
        region: env['AWS_REGION'] || undefined,
        now: () => new Date(),
      }),
      async startRun(reason) {
        // the agent itself, with the agent's environment (not repo code: nothing to keep from it)
        // the settings flags the watch was given apply to the run too (--root among them)
        const flags = Object.entries(o.input.flags).flatMap(([k, v]) => (typeof v === 'string' ? [`--${k}`, v] : v === true ? [`--${k}`] : []))
        const r = await exec.run(process.execPath, [entry, 'run', '--reason', reason, ...flags], {
          env: childEnv,
          timeoutMs: RUN_TIMEOUT_MS,
          onLine: (_stream, line) => void o.out.write(`${line}\n`),
        })
        return r.exitCode
      },
    })
  } finally {
    process.removeListener('SIGTERM', onSignal)
    process.removeListener('SIGINT', onSignal)
    await lock.release()
    log.flush()
  }
  return ExitCode.ok
}
