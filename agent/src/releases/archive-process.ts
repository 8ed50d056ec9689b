/**
 * The agent's side of releases/archive-worker.ts: starts it through the Exec seam as the service
 * user (no shell, a minimal environment, a timeout) and reads its one-line report, which comes
 * from a process the service user controls: parsed defensively, cut short, never trusted beyond
 * its types. The archive goes between the worker and a file in the agent's own directory by
 * descriptor (Exec's stdoutFile / stdinFile): never through the agent's memory, and the worker
 * needs no access to that directory.
 */
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { AgentError } from '../core/errors.js'
import type { Exec } from '../core/exec.js'
import { parseJsonObject } from '../core/json-object.js'
import type { UnpackLimits } from './archive.js'

/** Beside this module in both builds: dist/releases/ (tsc) and dist/ (the bundle). */
export const ARCHIVE_WORKER = fileURLToPath(new URL('./archive-worker.js', import.meta.url))

export interface WorkerOptions {
  exec: Exec
  /** the service user (undefined when the agent is not root: no switch) */
  user: { uid: number; gid: number } | undefined
  timeoutMs: number
  /** the worker script; tests point at the compiled one */
  worker?: string
}

const run = (w: WorkerOptions, args: string[], extra: { stdinFile?: string; stdoutFile?: string }) =>
  w.exec.run(process.execPath, [w.worker ?? ARCHIVE_WORKER, ...args], {
    env: { PATH: `${dirname(process.execPath)}:/usr/bin:/bin`, LANG: 'C.UTF-8' },
    timeoutMs: w.timeoutMs,
    ...(w.user ?? {}),
    ...extra,
  })

/** The worker's report: the last stderr line that is a JSON object (Node may print a warning
 * after it), or {} when there is none. */
const report = (stderr: string): Record<string, unknown> => {
  for (const line of stderr.trimEnd().split('\n').reverse()) {
    const o = line.length <= 16_384 ? parseJsonObject(line) : undefined
    if (o) return o
  }
  return {}
}
const text = (v: unknown): string => (typeof v === 'string' ? v.slice(0, 300) : 'no report')
const num = (v: unknown): number => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : 0)

const failure = (what: string, r: { exitCode: number; timedOut: boolean }, rep: Record<string, unknown>, timeoutMs: number) =>
  r.timedOut ? `${what} took longer than ${Math.round(timeoutMs / 1000)} s` : `${what} failed (exit ${r.exitCode}): ${text(rep['error'])}`

export interface PackResult {
  /** entries in the archive and the sum of their sizes (the index entry records both) */
  entries: number
  bytes: number
  /** files left out because the service wrote them after the release was complete */
  excluded: number
  examples: string[]
}

/** The release's archive written into `outFile` (created here), scanned for `envFile`'s values. */
export const packAsServiceUser = async (w: WorkerOptions, dir: string, completedAtMs: number, envFile: string, outFile: string): Promise<PackResult> => {
  const r = await run(w, ['pack', dir, String(Math.floor(completedAtMs)), envFile], { stdoutFile: outFile })
  const rep = report(r.stderr)
  if (r.exitCode === 2 && typeof rep['refused'] === 'string') {
    throw new AgentError(text(rep['refused']), {
      code: 'CACHE_SECRET_IN_RELEASE',
      remedy: 'make the service keep what it writes at runtime outside its release directory; a value that is no secret (like NODE_ENV) belongs in the manifest\'s "env"',
    })
  }
  if (r.exitCode !== 0 || rep['ok'] !== true) {
    throw new AgentError(failure(`packing ${dir}`, r, rep, w.timeoutMs), { code: 'CACHE_PACK_FAILED', remedy: 'check free disk space and that the release is readable by the service user; the next run tries again' })
  }
  const examples = Array.isArray(rep['examples']) ? rep['examples'].filter(x => typeof x === 'string').slice(0, 5).map(text) : []
  return { entries: num(rep['entries']), bytes: num(rep['bytes']), excluded: num(rep['excluded']), examples }
}

/** Extracts `archive` as `<releasesDir>/<id>` (whole, or not at all). */
export const unpackAsServiceUser = async (w: WorkerOptions, archive: string, releasesDir: string, id: string, limits: UnpackLimits): Promise<{ entries: number; bytes: number }> => {
  const r = await run(w, ['unpack', releasesDir, id, String(limits.maxBytes), String(limits.maxEntries)], { stdinFile: archive })
  const rep = report(r.stderr)
  if (r.exitCode === 2 && typeof rep['refused'] === 'string') {
    throw new AgentError(`archive refused: ${text(rep['refused'])}`, {
      code: 'CACHE_ARCHIVE_REFUSED',
      remedy: 'the cached release holds an entry no release may hold: remove its index entry and archive, and check who can write to the cache prefix',
    })
  }
  if (r.exitCode !== 0 || rep['ok'] !== true) {
    throw new AgentError(failure(`extracting ${archive}`, r, rep, w.timeoutMs), { code: 'CACHE_EXTRACT_FAILED', remedy: 'check free disk space under the releases directory; the release is built from source meanwhile' })
  }
  return { entries: num(rep['entries']), bytes: num(rep['bytes']) }
}
