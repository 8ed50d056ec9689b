/** The human summary of a run (TTY), and of `status`. */
import type { RunState } from '../run/state.js'

const ms = (n: number | undefined) => (n === undefined ? '' : n >= 10_000 ? `${(n / 1000).toFixed(1)} s` : `${n} ms`)

/** A warm-pool run must not read as serving: say what it left and what happens next. */
const warmPoolRow = (st: RunState): string | undefined => {
  if (!st.warmPool) return undefined
  if (st.outcome === 'prepared') return `${st.warmPool}: prepared, not started (starts when the instance leaves the pool)`
  return `${st.warmPool}: ${st.outcome === 'running' ? 'preparing' : 'prepare failed'}, nothing started`
}

const FROM: Record<NonNullable<RunState['releaseFrom']>, string> = {
  live: 'the live release (commit unchanged)',
  source: 'source (clone, npm ci, build)',
  cache: 'the release cache (no clone, npm ci or build)',
}

/** Where the commit and the release came from, and whether the release is in the cache now. */
const cacheRows = (st: RunState): [string, string | undefined][] => [
  ['release from', st.releaseFrom && FROM[st.releaseFrom]],
  ['commit from', st.cache?.commitFromPointer],
  ['release cache', st.cache && [st.cache.location, st.cache.lookup].filter(Boolean).join(': ')],
  ['cache publish', st.cache?.published],
]

export const formatSummary = (st: RunState): string => {
  const rows: [string, string | undefined][] = [
    ['outcome', `${st.outcome}${st.exitCode === undefined ? '' : ` (exit ${st.exitCode})`}`],
    ['service', st.service],
    ['environment', st.environment],
    ['branch', st.branch],
    ['repository', st.repository],
    ['commit', st.commit],
    ['release', st.release],
    ...cacheRows(st),
    ['previous release', st.previousRelease],
    ['url', st.url],
    ['lifecycle hook', st.lifecycle],
    ['warm pool', warmPoolRow(st)],
    ['reason', `${st.reason} (${st.mode} mode)`],
    ['started', st.startedAt],
    ['duration', ms(st.durationMs)],
  ]
  const lines = rows.filter(([, v]) => v).map(([k, v]) => `  ${k.padEnd(17)} ${v}`)
  lines.push('', '  phase       status    time      detail')
  for (const p of st.phases) lines.push(`  ${p.name.padEnd(11)} ${p.status.padEnd(9)} ${ms(p.durationMs).padStart(8)}  ${p.detail ?? ''}`)
  if (st.error) lines.push('', `  error: [${st.error.code}] ${st.error.message}`, `  remedy: ${st.error.remedy}`)
  return `${lines.join('\n')}\n`
}

export const printSummary = (out: NodeJS.WritableStream, st: RunState): void => {
  out.write(`\n${formatSummary(st)}`)
}

/**
 * A failed run's last words on stderr: `bootstrap-agent: <outcome> [CODE]: message`, then the
 * remedy. A message of several lines ends with its first line again, so that the verdict is also
 * the last line: `systemctl status bootstrap-agent` shows only the journal's last lines, and a
 * health failure's message carries the service's log tail.
 */
export const failureText = (outcome: string, f: { code: string; message: string; remedy: string }): string => {
  const head = `bootstrap-agent: ${outcome} [${f.code}]: ${f.message.split('\n')[0] ?? ''}`
  const text = `bootstrap-agent: ${outcome} [${f.code}]: ${f.message}\n  what to do: ${f.remedy}\n`
  return f.message.includes('\n') ? `${text}${head} (details above)\n` : text
}
