/** The human view of watch.json in `status`: what the watch sees, and the drain it ran. */
import type { DrainRecord, WatchState } from '../watch/state.js'

const ms = (n: number | undefined) => (n === undefined ? '' : n >= 10_000 ? `${(n / 1000).toFixed(1)} s` : `${n} ms`)

/** A drain: its outcome, trigger, times and steps (also in a drain's run report, `history`). */
export const formatDrain = (d: DrainRecord): string[] => [
  `  drain             ${d.outcome} (${d.reason}: ${d.trigger})`,
  `  drain started     ${d.startedAt}${d.finishedAt ? `, finished ${d.finishedAt} (${ms(d.durationMs)})` : ''}`,
  '',
  '  drain step  status    time      detail',
  ...d.steps.map(s => `  ${s.name.padEnd(11)} ${s.status.padEnd(9)} ${ms(s.durationMs).padStart(8)}  ${s.detail ?? ''}`),
]

export const formatWatch = (w: WatchState, alive: boolean): string => {
  const imds = w.imds.ok ? 'ok' : `not answering (${w.imds.consecutiveFailures} failed poll${w.imds.consecutiveFailures === 1 ? '' : 's'}: ${w.imds.error ?? 'unknown error'})`
  const rows: [string, string | undefined][] = [
    ['watch', alive ? `running (pid ${w.pid})` : `not running (pid ${w.pid} is gone)`],
    ['watching since', w.startedAt],
    ['last poll', w.lastPollAt ? `${w.lastPollAt}, IMDS ${imds}` : 'none yet'],
    ['target state', w.targetState === undefined ? undefined : w.targetState ?? 'none (not in an Auto Scaling group)'],
    ['spot notice', w.spotNotice ? `${w.spotNotice.action} at ${w.spotNotice.time} (seen ${w.spotNotice.seenAt})` : 'none'],
    ...w.runs.map((r): [string, string] => [`run (${r.reason})`, `started ${r.startedAt}${r.exitCode === undefined ? ', running' : `, exit ${r.exitCode}`}`]),
  ]
  const lines = rows.filter(([, v]) => v !== undefined).map(([k, v]) => `  ${k.padEnd(17)} ${v}`)
  if (w.drain) lines.push('', ...formatDrain(w.drain))
  if (w.hook) lines.push('', `  terminating hook  ${w.hook.outcome}${w.hook.answered ? '' : ' (asked again at the next poll)'}: ${w.hook.detail} (${w.hook.at})`)
  return `${lines.join('\n')}\n`
}
