/**
 * One report, one CloudWatch Logs event: PutLogEvents takes an event of at most 1 MiB counting
 * 26 bytes of overhead (1,048,576 bytes for the batch, "the sum of all event messages in UTF-8,
 * plus 26 bytes for each log event"; 256 KB per event until April 2025). A report over it is cut,
 * never dropped, in this order, each step only while it is still too big:
 *
 *   1. evidence: the longest text loses lines from its start (the last lines, nearest the
 *      failure, stay), then the next longest, down to nothing
 *   2. the error message and the phase (or drain step) details: each cut to its first 1,000
 *      characters
 *   3. the run (or drain) record: only its identifying fields and the error code are kept
 *
 * `truncated` says what was cut and how big the report was, so a reader knows.
 */
import type { Report, Truncation } from './report.js'

/** 1 MiB minus the 26 bytes PutLogEvents counts for each event */
export const MAX_EVENT_BYTES = 1_048_576 - 26
const DETAIL_CHARS = 1_000

const size = (v: unknown): number => Buffer.byteLength(JSON.stringify(v))

const short = (s: string | undefined): string | undefined =>
  s === undefined || s.length <= DETAIL_CHARS ? s : `${s.slice(0, DETAIL_CHARS)}…`

/**
 * The longest end of `text` whose JSON is at most `bytes` shorter than the whole's (binary search:
 * a control character costs 6 bytes of JSON, a CJK one 3), started at a line start when one is
 * near, never inside a surrogate pair.
 */
const dropHead = (text: string, bytes: number): string => {
  const target = size(text) - bytes
  if (target <= 2) return ''
  let lo = 0
  let hi = text.length
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2)
    if (size(text.slice(mid)) <= target) hi = mid
    else lo = mid + 1
  }
  let rest = text.slice(lo)
  const nl = rest.indexOf('\n')
  if (lo > 0 && nl >= 0 && nl < 200) rest = rest.slice(nl + 1)
  return /^[\uDC00-\uDFFF]/.test(rest) ? rest.slice(1) : rest
}

const cutEvidence = (r: Report, limit: number, t: Truncation): void => {
  const dropped = r.evidence.map(() => 0)
  // room for the lines that say what was cut, added to `truncated` after the loop
  const reserve = 300 * r.evidence.length
  for (;;) {
    const over = size(r) + reserve - limit
    if (over <= 0) break
    let i = -1
    for (let j = 0; j < r.evidence.length; j++) if ((r.evidence[j]?.text.length ?? 0) > (r.evidence[i]?.text.length ?? 0)) i = j
    const e = r.evidence[i]
    if (!e || e.text === '') break
    const before = Buffer.byteLength(e.text)
    e.text = dropHead(e.text, over)
    dropped[i] = (dropped[i] ?? 0) + before - Buffer.byteLength(e.text)
  }
  r.evidence.forEach((e, i) => {
    if (dropped[i]) t.cut.push(`evidence[${i}] (${e.source}): ${dropped[i]} bytes from its start${e.text === '' ? ', all of it' : ''}`)
  })
}

const cutDetails = (r: Report, t: Truncation): void => {
  if (r.kind === 'run') {
    if (r.run.error) r.run.error.message = short(r.run.error.message) ?? ''
    for (const p of r.run.phases) if (p.detail !== undefined) p.detail = short(p.detail) ?? ''
  } else {
    for (const s of r.drain.steps) if (s.detail !== undefined) s.detail = short(s.detail) ?? ''
  }
  t.cut.push(`the error message and every detail: to their first ${DETAIL_CHARS} characters`)
}

const cutRecord = (r: Report, t: Truncation): void => {
  if (r.kind === 'run') {
    const s = r.run
    r.run = {
      version: s.version, runId: s.runId, command: s.command, reason: s.reason, mode: s.mode, pid: s.pid, startedAt: s.startedAt, outcome: s.outcome,
      ...(s.exitCode === undefined ? {} : { exitCode: s.exitCode }),
      ...(s.commit === undefined ? {} : { commit: s.commit }),
      ...(s.release === undefined ? {} : { release: s.release }),
      phases: [],
      ...(s.error ? { error: { code: s.error.code, message: '', remedy: '', ...(s.error.phase ? { phase: s.error.phase } : {}) } } : {}),
    }
  } else {
    r.drain = { ...r.drain, steps: [] }
  }
  t.cut.push('the record: all but its identifying fields and the error code')
}

/** The event's message: the report itself when it fits, else a copy cut as described above. */
export const fitReport = (report: Report, limit = MAX_EVENT_BYTES): { message: string; truncated?: Truncation } => {
  const message = JSON.stringify(report)
  const originalBytes = Buffer.byteLength(message)
  if (originalBytes <= limit) return { message }
  const r = structuredClone(report)
  const t: Truncation = { originalBytes, limitBytes: limit, cut: [] }
  r.truncated = t
  cutEvidence(r, limit, t)
  if (size(r) > limit) cutDetails(r, t)
  if (size(r) > limit) cutRecord(r, t)
  return { message: JSON.stringify(r), truncated: t }
}
