/**
 * The last guard before a release leaves the instance: the uncompressed tar on its way to the
 * archive passes through here (in releases/archive-worker.ts), and an entry whose name, link or
 * content holds a value of the service's env file stops the publication (invariant 1: a secret value lives in the env file and the
 * service's environment only). The env file lives outside the release and the build runs
 * without secrets, so a hit means the service wrote one into its own directory in a way the
 * packer's "changed after completion" rule did not catch.
 *
 * Values shorter than 8 bytes are not looked for (as the scrubber's per-line rule): "3000" or
 * "true" turn up in any node_modules and say nothing. The error names the entry and the key,
 * never the value. Also counts the entries and their bytes, which the index entry records.
 */
import { Transform, type TransformCallback } from 'node:stream'
import { Parser, type ReadEntry } from 'tar'
import { AgentError } from '../core/errors.js'

export const SCAN_MIN_BYTES = 8

export interface ScanStats {
  entries: number
  /** sum of the entries' sizes: what extraction writes */
  bytes: number
}

interface Needle {
  key: string
  bytes: Buffer
}

const needlesOf = (secrets: Readonly<Record<string, string>>): Needle[] => {
  const out: Needle[] = []
  for (const [key, value] of Object.entries(secrets)) {
    // a multi-line value (a PEM key) can turn up one line at a time
    const parts = new Set([value, ...value.split(/\r?\n/).map(l => l.trim())])
    for (const p of parts) if (Buffer.byteLength(p) >= SCAN_MIN_BYTES) out.push({ key, bytes: Buffer.from(p) })
  }
  return out
}

const found = (entry: string, key: string): AgentError =>
  new AgentError(`the release holds the value of secret key ${key} in ${JSON.stringify(entry.slice(0, 200))}: not published`, {
    code: 'CACHE_SECRET_IN_RELEASE',
    remedy: `make the service keep what it writes at runtime outside its release directory (or stop writing ${key} to a file); should ${key} hold a value that is no secret (like NODE_ENV), move it to the manifest's "env"`,
  })

/** A pass-through stream over an uncompressed tar; `stats` is complete once it ended. */
export const secretScan = (secrets: Readonly<Record<string, string>>): Transform & { stats: ScanStats } => {
  const needles = needlesOf(secrets)
  const keep = Math.max(0, ...needles.map(n => n.bytes.length)) - 1
  const stats: ScanStats = { entries: 0, bytes: 0 }
  let error: AgentError | undefined
  const hit = (text: Buffer, entry: string) => {
    const n = needles.find(x => text.includes(x.bytes))
    if (n) error ??= found(entry, n.key)
  }
  const parser = new Parser({
    // strict: a stream that is no tar is no release to publish
    strict: true,
  })
  parser.on('entry', (entry: ReadEntry) => {
    stats.entries += 1
    stats.bytes += entry.size ?? 0
    hit(Buffer.from(`${entry.path}\0${entry.linkpath ?? ''}`), entry.path)
    // a value split across two chunks is found in the overlap kept from the previous one
    let tail = Buffer.alloc(0)
    entry.on('data', (chunk: Buffer) => {
      const text = tail.length ? Buffer.concat([tail, chunk]) : chunk
      hit(text, entry.path)
      tail = keep > 0 ? Buffer.from(text.subarray(Math.max(0, text.length - keep))) : tail
    })
  })
  let parseError: Error | undefined
  parser.on('error', (e: Error) => (parseError ??= e))
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      parser.write(chunk)
      const e = error ?? parseError
      if (e) return cb(e)
      cb(null, chunk)
    },
    flush(cb: TransformCallback) {
      parser.end()
      cb(error ?? parseError ?? null)
    },
  })
  return Object.assign(t, { stats })
}
