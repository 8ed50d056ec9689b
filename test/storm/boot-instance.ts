/**
 * One simulated instance of the boot storm: its own IMDSv2 endpoint, agent seams and SDK clients,
 * the agent's real `identify`, `resolve` and `secrets` phases through the real runner, then the
 * lifecycle completion `run` makes in its `finally`. What it returns is read from the outcome:
 * the runner's phase records, the secrets the phase produced, and the agent's own log lines
 * (its retries, and a search for secret values in them).
 */
import { Writable } from 'node:stream'
import pino from 'pino'
import { createAwsIdentity, createImds } from '../../agent/src/aws/identity.js'
import { createAwsSeams } from '../../agent/src/aws/seams.js'
import { REDACT_PATHS } from '../../agent/src/core/logger.js'
import { parseManifest, resolveServiceSpec } from '../../agent/src/config/manifest.js'
import { RUN_PHASES } from '../../agent/src/run/pipeline.js'
import { createScrubber } from '../../agent/src/secrets/redact.js'
import { runPhases } from '../../agent/src/run/runner.js'
import type { RunContext } from '../../agent/src/run/context.js'
import type { RunState } from '../../agent/src/run/state.js'
import { findLeaks } from '../helpers/leak-scan.js'

/** The phases a booting instance runs before its long ones (fetch, install, ...). */
export const STORM_PHASES = ['identify', 'resolve', 'secrets']

export interface BootInput {
  instanceId: string
  imdsEndpoint: string
  service: string
  /** the env map the secrets phase must produce for this service */
  expectedEnv: Record<string, string>
  /** the agent's root (nothing is written there by these phases) */
  root: string
  /** every secret value of the fleet: none may appear in a log line */
  secretValues: string[]
  tagsOff: boolean
}

export interface InstanceResult {
  instanceId: string
  service: string
  tagsOff: boolean
  ok: boolean
  /** error code and message when not ok */
  error?: string
  /** identify -> complete, ms */
  ms: number
  phases: { name: string; status: string; durationMs: number }[]
  /** the env map equals the service's secrets and parameters, key for key */
  secretsRight: boolean
  /** retries the agent logged, per `service:Action` */
  retries: Record<string, number>
  /** error codes of those retries */
  retryCodes: Record<string, number>
  /** secret values found in this instance's log lines ([] is right) */
  leaks: string[]
}

const PHASES = RUN_PHASES.filter(p => STORM_PHASES.includes(p.name))

const countRetries = (lines: string[]) => {
  const retries: Record<string, number> = {}
  const retryCodes: Record<string, number> = {}
  for (const line of lines) {
    const entry = JSON.parse(line) as { aws?: string; code?: string; msg?: string }
    // the line aws/secrets.ts and aws/lifecycle-hook.ts log before each wait
    if (entry.aws === undefined || !/; retrying$/.test(entry.msg ?? '')) continue
    retries[entry.aws] = (retries[entry.aws] ?? 0) + 1
    retryCodes[entry.code ?? '?'] = (retryCodes[entry.code ?? '?'] ?? 0) + 1
  }
  return { retries, retryCodes }
}

export const bootInstance = async (b: BootInput): Promise<InstanceResult> => {
  const lines: string[] = []
  // plain pino with the agent's key redaction but *without* its value scrubber: a secret value
  // reaching a log call at all is a leak here, even one the scrubber would have masked
  const log = pino({ level: 'info', base: { instance: b.instanceId }, redact: { paths: REDACT_PATHS, censor: '[REDACTED]' } },
    new Writable({ write(c: Buffer, _e, done) { lines.push(c.toString()); done() } }))
  const manifest = parseManifest(JSON.stringify({ version: 1, services: { [b.service]: { requiredEnv: Object.keys(b.expectedEnv).sort() } } }), 'bootstrap-agent.json')
  const ctx: RunContext = {
    seams: createAwsSeams({}, log, { identity: createAwsIdentity({ imds: createImds({ endpoint: b.imdsEndpoint }), log }) }),
    log,
    scrubber: createScrubber(),
    input: { flags: { root: b.root, reason: 'boot' }, env: {}, agentEnv: {}, mode: 'aws' },
    // `fetch` reads it from the release's manifest, and finds the service user; the storm clones nothing
    spec: resolveServiceSpec(manifest, b.service, 'bootstrap-agent.json', { hasStartScript: true, main: undefined }),
    user: { name: 'storm', uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, switchTo: undefined, created: false },
  }
  const state: RunState = { version: 1, runId: b.instanceId, command: 'run', reason: 'boot', mode: 'aws', pid: process.pid, startedAt: new Date().toISOString(), outcome: 'running', phases: [] }
  const t0 = performance.now()
  const failure = await runPhases(PHASES, {
    ctx, log, state,
    // state.json is the run command's business; the storm measures the AWS path
    saveState: async () => {},
    // as `run` does: the waiting launch gets CONTINUE after a good run, ABANDON otherwise
    async finally(c, ok) {
      if (!c.hook && c.identity) c.hook = c.seams.hook(c.settings, c.identity)
      if (!c.hook) return { status: 'skipped', detail: 'instance not identified' }
      return { detail: await c.hook.complete(ok ? 'CONTINUE' : 'ABANDON') }
    },
  })
  const ms = performance.now() - t0
  const got = ctx.secrets?.values
  const secretsRight = got !== undefined && JSON.stringify(Object.entries(got).sort()) === JSON.stringify(Object.entries(b.expectedEnv).sort())
  return {
    instanceId: b.instanceId,
    service: b.service,
    tagsOff: b.tagsOff,
    ok: failure === undefined && secretsRight,
    ...(failure ? { error: `${failure.code}: ${failure.message}` } : {}),
    ms,
    phases: state.phases.map(p => ({ name: p.name, status: p.status, durationMs: p.durationMs })),
    secretsRight,
    ...countRetries(lines),
    leaks: findLeaks(b.secretValues, { root: b.root, allow: [], texts: { [`log of ${b.instanceId}`]: lines.join('') } }),
  }
}
