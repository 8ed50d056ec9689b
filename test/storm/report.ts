/**
 * Figures of one storm: success rate, per-instance time (p50/p99), retries per run, throttled
 * responses per action, wall time; as data (written to .cache/) and as the Markdown that goes
 * into docs/reliability.md. Percentiles are nearest-rank over the instances.
 */
import { cpus } from 'node:os'
import { classifyAwsError } from '../../agent/src/aws/retry.js'
import type { BucketSpec } from '../helpers/throttle-proxy.js'
import { describeRates } from './aws-rates.js'
import type { FleetRun } from './fleet.js'

export interface Spread {
  p50: number
  p99: number
  max: number
  mean: number
}

export interface StormReport {
  date: string
  machine: string
  command: string
  instances: number
  succeeded: number
  successRate: number
  wallMs: number
  instanceMs: Spread
  phaseMs: Record<string, Spread>
  retriesPerRun: Spread
  retriesTotal: number
  retriesByAction: Record<string, number>
  retryCodes: Record<string, number>
  requests: Record<string, { passed: number; throttled: number }>
  rates: string[]
  eventLoopDelayMs: FleetRun['eventLoopDelayMs']
  cpuSeconds: number
  failures: string[]
}

export const percentile = (sorted: readonly number[], p: number): number =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? 0

export const spread = (values: readonly number[]): Spread => {
  const sorted = [...values].sort((a, b) => a - b)
  const mean = sorted.length === 0 ? 0 : sorted.reduce((a, b) => a + b, 0) / sorted.length
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted[sorted.length - 1] ?? 0, mean }
}

/** Throttled answers to the actions whose `service:Action` starts with `prefix` ('' for all). */
export const throttledOf = (counts: FleetRun['counts'], prefix = ''): number =>
  Object.entries(counts).filter(([a]) => a.startsWith(prefix)).reduce((n, [, c]) => n + c.throttled, 0)

/** Retries the agents logged after a throttling error. */
export const throttlingRetries = (r: StormReport): number =>
  Object.entries(r.retryCodes).filter(([code]) => classifyAwsError({ name: code }).kind === 'throttled').reduce((n, [, k]) => n + k, 0)

const add = (into: Record<string, number>, from: Record<string, number>) => {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v
}

export const stormReport = (run: FleetRun, rates: readonly BucketSpec[], command: string): StormReport => {
  const r = run.results
  const retriesByAction: Record<string, number> = {}
  const retryCodes: Record<string, number> = {}
  for (const i of r) {
    add(retriesByAction, i.retries)
    add(retryCodes, i.retryCodes)
  }
  const runRetries = r.map(i => Object.values(i.retries).reduce((a, b) => a + b, 0))
  const phaseNames = [...new Set(r.flatMap(i => i.phases.map(p => p.name)))]
  const succeeded = r.filter(i => i.ok).length
  return {
    date: new Date().toISOString(),
    machine: `${cpus().length} cores (${cpus()[0]?.model.trim() ?? 'unknown CPU'}), Node ${process.version}`,
    command,
    instances: r.length,
    succeeded,
    successRate: r.length === 0 ? 0 : succeeded / r.length,
    wallMs: run.wallMs,
    instanceMs: spread(r.map(i => i.ms)),
    phaseMs: Object.fromEntries(phaseNames.map(n => [n, spread(r.flatMap(i => i.phases.filter(p => p.name === n).map(p => p.durationMs)))])),
    retriesPerRun: spread(runRetries),
    retriesTotal: runRetries.reduce((a, b) => a + b, 0),
    retriesByAction,
    retryCodes,
    requests: run.counts,
    rates: describeRates(rates),
    eventLoopDelayMs: run.eventLoopDelayMs,
    cpuSeconds: run.cpuSeconds,
    failures: r.filter(i => !i.ok).map(i => `${i.instanceId} (${i.service}): ${i.error ?? 'wrong secrets'}`),
  }
}

const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`
const n1 = (x: number) => (Number.isInteger(x) ? String(x) : x.toFixed(1))

export const formatReport = (x: StormReport): string => {
  const lines = [
    `${x.instances} instances, ${x.date.slice(0, 10)}, ${x.machine}; \`${x.command}\``,
    '',
    '| figure | value |',
    '|---|---|',
    `| success | ${x.succeeded}/${x.instances} (${(x.successRate * 100).toFixed(1)}%) |`,
    `| wall time (all instances) | ${s(x.wallMs)} |`,
    `| per instance, identify → complete | p50 ${s(x.instanceMs.p50)}, p99 ${s(x.instanceMs.p99)}, max ${s(x.instanceMs.max)} |`,
    ...Object.entries(x.phaseMs).map(([name, p]) => `| phase ${name} | p50 ${s(p.p50)}, p99 ${s(p.p99)}, max ${s(p.max)} |`),
    `| retries per run (logged by the agent) | p50 ${n1(x.retriesPerRun.p50)}, p99 ${n1(x.retriesPerRun.p99)}, max ${n1(x.retriesPerRun.max)}, mean ${x.retriesPerRun.mean.toFixed(1)}; ${x.retriesTotal} in all |`,
    `| retry codes | ${Object.entries(x.retryCodes).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'} |`,
    `| event-loop delay of the storm process | p50 ${x.eventLoopDelayMs.p50.toFixed(0)} ms, p99 ${x.eventLoopDelayMs.p99.toFixed(0)} ms, max ${x.eventLoopDelayMs.max.toFixed(0)} ms |`,
    `| CPU of the storm process | ${x.cpuSeconds.toFixed(1)} s |`,
    '',
    '| action | accepted | throttled | retries logged |',
    '|---|---|---|---|',
    ...Object.entries(x.requests).sort(([a], [b]) => a.localeCompare(b))
      .map(([a, c]) => `| ${a} | ${c.passed} | ${c.throttled} | ${x.retriesByAction[a] ?? 0} |`),
    '',
    `Rates enforced: ${x.rates.join('; ')}.`,
  ]
  if (x.failures.length) lines.push('', 'Failures:', ...x.failures.slice(0, 20).map(f => `- ${f}`))
  return `${lines.join('\n')}\n`
}
