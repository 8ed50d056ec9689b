/**
 * Evidence: what a failing step printed or left behind (npm ci's and the build's output, git's
 * stderr, the service's log tail from a failed health gate), carried by the AgentError it caused
 * into the run report (reports/report.ts), which outlives the instance. Only the tail is kept, and
 * bounded: the last lines are the ones nearest the failure. Secret values are scrubbed by the
 * producer where it can, and again over the whole report before it is sent.
 */
export type EvidenceKind = 'npm' | 'build' | 'git' | 'service-log'

export interface Evidence {
  kind: EvidenceKind
  /** what the text is, e.g. "npm ci stderr", or the log file it was read from */
  source: string
  /** the last lines, at most EVIDENCE_MAX_LINES and EVIDENCE_MAX_BYTES */
  text: string
}

export const EVIDENCE_MAX_LINES = 100
export const EVIDENCE_MAX_BYTES = 32 * 1024

/** The last `maxLines` non-empty lines of `text`, at most `maxBytes` of UTF-8 (cut at a line start). */
export const tailText = (text: string, maxLines = EVIDENCE_MAX_LINES, maxBytes = EVIDENCE_MAX_BYTES): string => {
  const lines = text.split('\n').map(l => l.trimEnd()).filter(l => l !== '').slice(-maxLines)
  let out = lines.join('\n')
  while (Buffer.byteLength(out) > maxBytes) {
    const nl = out.indexOf('\n')
    // one line longer than the budget: keep its end
    out = nl < 0 ? Buffer.from(out).subarray(-maxBytes).toString('utf8').replace(/^\uFFFD+/, '') : out.slice(nl + 1)
  }
  return out
}

/** Evidence from a child's output: its stderr and stdout tails, the empty ones left out. */
export const outputEvidence = (kind: EvidenceKind, what: string, r: { stdout: string; stderr: string }, scrub: (s: string) => string = s => s): Evidence[] =>
  (['stderr', 'stdout'] as const)
    .map(stream => ({ kind, source: `${what} ${stream}`, text: scrub(tailText(r[stream])) }))
    .filter(e => e.text !== '')
