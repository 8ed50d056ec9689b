/**
 * The human output of `history` and `fleet` (a TTY; otherwise they print JSON lines): the table of
 * runs, one run's whole report with its evidence, the fleet with what each instance serves. What
 * is shown came from instances (their reports): every line is made printable (core/table.ts).
 */
import { formatTable, printableLines } from '../core/table.js'
import type { FleetView } from '../operator/fleet.js'
import type { HistoryRow } from '../operator/history.js'
import type { Report } from '../reports/report.js'
import { formatSummary } from './summary.js'
import { formatDrain } from './watch-summary.js'

const time = (iso: string) => iso.replace('T', ' ').replace(/\.\d{3}Z$/, 'Z')
const sha = (c: string | undefined) => (c === undefined ? '' : c.slice(0, 12))

export const formatHistory = (rows: readonly HistoryRow[], footer: string): string => {
  const head = ['time', 'instance', 'run', 'reason', 'commit', 'outcome', 'failed phase', 'error']
  const body = rows.map(r => [time(r.time), r.instanceId, (r.runId ?? '').slice(0, 8), r.reason, sha(r.commit), r.outcome, r.failedPhase ?? '', r.errorCode ?? ''])
  return [...formatTable(head, body), '', `  ${footer}`, ''].join('\n')
}

export const formatReport = (r: Report): string => {
  const lines = [`  ${r.kind} report of ${r.instanceId}, made ${r.at} by agent ${r.agentVersion}${r.hookAfter ? ` (sent before its ${r.hookAfter})` : ''}`, '']
  if (r.kind === 'run') {
    lines.push(formatSummary(r.run).trimEnd())
    lines.push('', `  serving           ${r.serving ? `${r.serving.release} (commit ${r.serving.commit})` : 'nothing (no release was left running)'}`)
  } else {
    lines.push(...formatDrain(r.drain))
  }
  for (const e of r.evidence) {
    lines.push('', `  evidence: ${e.kind}, ${e.source}`, ...e.text.split('\n').map(l => `    | ${l}`))
  }
  if (r.truncated) lines.push('', `  cut to fit one CloudWatch Logs event (${r.truncated.originalBytes} bytes): ${r.truncated.cut.join('; ')}`)
  return `${printableLines(lines.join('\n'))}\n`
}

const age = (ms: number): string => {
  const m = Math.floor(ms / 60_000)
  if (m < 1) return `${Math.floor(ms / 1000)} s`
  if (m < 120) return `${m} min`
  const h = Math.floor(m / 60)
  return h < 48 ? `${h} h` : `${Math.floor(h / 24)} d`
}

export const formatFleet = (v: FleetView, what: string): string => {
  const head = ['instance', 'state', 'group', 'lifecycle', 'health', 'last run', 'reason', 'outcome', 'commit', 'serving']
  const body = v.instances.map(i => {
    const l = i.lastRun
    return [
      i.instanceId, i.state, i.group ?? '-', i.lifecycleState ?? '-', i.health ?? '-',
      l ? `${age(l.ageMs)} ago` : i.note ?? '', l?.reason ?? '', l ? `${l.outcome}${l.errorCode ? ` [${l.errorCode}]` : ''}` : '', sha(l?.commit), l ? (l.serving ? sha(l.serving.commit) : 'nothing') : '',
    ]
  })
  const serving = v.serving.map(s => `${s.commit} on ${s.instances.length}`).join(', ')
  const verdict = v.instances.length === 0 ? `no instance of ${what}`
    : v.serving.length === 1 ? `${what}: all ${v.instances.length} instance(s) serve ${serving.replace(/ on \d+$/, '')}`
      : `${what}: DRIFT, ${v.serving.length} different commits serve: ${serving}`
  return [...formatTable(head, body), '', `  ${verdict}`, ''].join('\n')
}
