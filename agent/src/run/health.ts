/**
 * The health gate: an HTTP probe from the manifest, or (by default) every PM2 instance `online`
 * without a restart for a stable window. Fails early when PM2 reports the app errored or
 * crash-looping, and the failure carries the tail of the service's logs (scrubbed of secrets),
 * read as core/untrusted-files.ts reads anything the service user can write: a log replaced by a
 * link, a FIFO or a hard link is named as such and not read.
 */
import { join } from 'node:path'
import { get as httpGet } from 'node:http'
import { get as httpsGet } from 'node:https'
import { setTimeout as sleep } from 'node:timers/promises'
import { AgentError } from '../core/errors.js'
import { EVIDENCE_MAX_BYTES, EVIDENCE_MAX_LINES, tailText, type Evidence } from '../core/evidence.js'
import { tailUntrusted } from '../core/untrusted-files.js'
import type { HealthSpec } from '../config/manifest.js'
import type { Pm2, Pm2Process } from '../pm2/cli.js'

export interface HealthInput {
  app: string
  health: HealthSpec
  timeoutMs: number
  stableMs: number
  pm2: Pm2
  /** the service's log directory, the log files in it, and the uid that writes them */
  logs: ServiceLogs
  scrub: (s: string) => string
  pollMs?: number
}

export interface HealthResult {
  detail: string
  url?: string
}

export interface ServiceLogs {
  dir: string
  files: string[]
  owner: number
}

/** The error and output logs PM2 writes for `app` (pm2/ecosystem.ts names them). */
export const serviceLogs = (appLogDir: string, app: string, owner: number): ServiceLogs =>
  ({ dir: appLogDir, files: [`${app}-error.log`, `${app}-out.log`], owner })

/**
 * The service's log tails: the last lines of each file, scrubbed. The error message quotes the
 * last 15 lines of each; the run report's evidence (core/evidence.ts) keeps up to
 * EVIDENCE_MAX_LINES. One read per file serves both. A log that is a link, a FIFO or a hard link
 * (planted by the service or its install scripts) is named with what it is, never read.
 */
const logTails = async (i: HealthInput): Promise<{ message: string; evidence: Evidence[] }> => {
  const parts: string[] = []
  const evidence: Evidence[] = []
  for (const name of i.logs.files) {
    const file = join(i.logs.dir, name)
    const t = await tailUntrusted({ dir: i.logs.dir, rel: name, owner: i.logs.owner }, EVIDENCE_MAX_LINES, EVIDENCE_MAX_BYTES)
    if (t.kind === 'refused') {
      parts.push(`--- ${file} not read: ${t.why}`)
      evidence.push({ kind: 'service-log', source: file, text: `not read: ${t.why}` })
      continue
    }
    if (t.kind === 'missing' || t.lines.length === 0) continue
    const last = t.lines.slice(-15)
    parts.push(`--- ${file} (last ${last.length} lines)\n${last.join('\n')}`)
    evidence.push({ kind: 'service-log', source: file, text: i.scrub(tailText(t.lines.join('\n'))) })
  }
  return { message: parts.length ? i.scrub(`\n${parts.join('\n')}`) : ' (the service wrote no log output)', evidence }
}

const fail = async (i: HealthInput, why: string): Promise<never> => {
  const tails = await logTails(i)
  throw new AgentError(`health check of "${i.app}" failed: ${why}.${tails.message}`, {
    code: 'HEALTH_FAILED',
    remedy: 'fix the service so it starts and answers its health check; the previous good release keeps serving',
    evidence: tails.evidence,
  })
}

const appProcs = (list: Pm2Process[], app: string) => list.filter(p => p.name === app)

/**
 * One GET: the status, or why there was none. node:http rather than fetch(): fetch loads undici
 * (+8.5 MB of the agent's peak RSS, bench/README.md); redirects are not followed either way.
 */
const probe = (url: string, timeoutMs: number): Promise<string | number> =>
  new Promise(resolve => {
    const why = (e: unknown) => resolve(e instanceof Error && e.cause instanceof Error ? e.cause.message : e instanceof Error ? e.message : String(e))
    try {
      const req = (url.startsWith('https:') ? httpsGet : httpGet)(url, { signal: AbortSignal.timeout(timeoutMs) }, res => {
        // the body is not read for anything; drained so the socket is freed
        res.on('error', () => undefined).resume()
        resolve(res.statusCode ?? 0)
      })
      req.once('error', why)
    } catch (e) {
      why(e)
    }
  })

/**
 * One probe may take what is left of the health timeout, up to 10 s: a slow endpoint (a health
 * check that pings its database) passes whatever the poll interval, and a probe that hangs on a
 * server still starting up is given up in time for the next one.
 */
export const probeTimeoutMs = (leftMs: number): number => Math.max(100, Math.min(leftMs, 10_000))

export const waitHealthy = async (i: HealthInput): Promise<HealthResult> => {
  const poll = i.pollMs ?? 250
  const deadline = Date.now() + (i.health.timeoutMs ?? i.timeoutMs)
  const stableMs = i.health.kind === 'pm2' ? i.health.stableMs ?? i.stableMs : 0
  let baseline: number | undefined
  let onlineSince: number | undefined
  let last = 'not checked yet'
  for (;;) {
    const procs = appProcs(await i.pm2.list(), i.app)
    if (procs.length === 0) return fail(i, 'PM2 does not run it')
    const bad = procs.find(p => p.status === 'errored' || p.status === 'stopped')
    if (bad) return fail(i, `PM2 reports it ${bad.status} after ${bad.restarts} restart(s)`)
    const restarts = procs.reduce((n, p) => n + p.restarts, 0)
    const allOnline = procs.every(p => p.status === 'online')
    if (i.health.kind === 'http') {
      const r = allOnline ? await probe(i.health.url, probeTimeoutMs(deadline - Date.now())) : 'not online yet'
      if (r === i.health.expectStatus) return { detail: `${i.health.url} answered ${r}`, url: i.health.url }
      last = typeof r === 'number' ? `status ${r}` : r
    } else {
      if (!allOnline || (baseline !== undefined && restarts > baseline)) {
        baseline = restarts
        onlineSince = undefined
        last = allOnline ? `it restarted (${restarts} restarts)` : `status ${procs.map(p => p.status).join(',')}`
      } else {
        baseline ??= restarts
        onlineSince ??= Date.now()
        if (Date.now() - onlineSince >= stableMs) {
          return { detail: `${procs.length} instance(s) online for ${Date.now() - onlineSince} ms without restarts` }
        }
        last = `online for ${Date.now() - onlineSince} ms`
      }
    }
    if (Date.now() >= deadline) {
      const what = i.health.kind === 'http' ? `${i.health.url} did not answer ${i.health.expectStatus}` : `it did not stay online for ${stableMs} ms`
      return fail(i, `${what} within ${Math.round((i.health.timeoutMs ?? i.timeoutMs) / 1000)} s (last: ${last})`)
    }
    await sleep(poll)
  }
}
