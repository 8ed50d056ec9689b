/**
 * The release archive's own process, started by the agent (releases/archive-process.ts) as the
 * service user, so that packing and unpacking touch the release with that user's rights only:
 * root never reads or writes inside a directory the service user controls (invariant 5). Its
 * result is the last line on stderr, one JSON object, which the agent reads as untrusted input.
 *
 *   pack   <releaseDir> <completedAtMs> <envFile>                gzip tar on stdout
 *   unpack <releasesDir> <releaseId> <maxBytes> <maxEntries>     gzip tar on stdin
 *
 * stdin and stdout are files the agent opened in its own directory and handed over as descriptors:
 * the archive never passes through the agent's memory, and this process never sees the agent's
 * directory. pack reads the service's env file (the service user's own, 0600) for the values the
 * secret scan looks for: no secret travels on a command line or a pipe to get here.
 *
 * unpack extracts into `<releasesDir>/.extract-<random>` and renames it to `<releaseId>` only when
 * every entry is in place: a crash at any point leaves at most a temporary directory (removed by
 * the next unpack), never a partial release under a release id. Exit codes: 0 done, 2 the archive
 * was refused (hostile, or not what its entry recorded), 1 anything else (usage, disk full).
 */
import { chmod, mkdtemp, readdir, readFile, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { isAgentError } from '../core/errors.js'
import { parseEnv } from '../secrets/env-file.js'
import { ArchiveRefused, packArchive, unpackRelease } from './archive.js'
import { parseReleaseId } from './releases.js'

export const EXTRACT_PREFIX = '.extract-'

const report = (o: Record<string, unknown>): void => {
  process.stderr.write(`${JSON.stringify(o)}\n`)
}

const count = (v: string | undefined): number => {
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`not a count: ${JSON.stringify(v)}`)
  return n
}

const pack = async (dir: string, completedAtMs: number, envFile: string): Promise<number> => {
  const excluded: string[] = []
  const secrets = parseEnv(await readFile(envFile, 'utf8'), envFile)
  try {
    const stats = await packArchive({ dir, completedAtMs, excluded, secrets }, process.stdout)
    report({ ok: true, ...stats, excluded: excluded.length, examples: excluded.slice(0, 5) })
    return 0
  } catch (e) {
    if (isAgentError(e) && e.code === 'CACHE_SECRET_IN_RELEASE') {
      report({ refused: e.message })
      return 2
    }
    throw e
  }
}

const unpack = async (releasesDir: string, id: string, maxBytes: number, maxEntries: number): Promise<number> => {
  if (!parseReleaseId(id)) throw new Error(`not a release id: ${JSON.stringify(id)}`)
  // left by an unpack that was killed: nothing else ever names a directory like this
  for (const name of await readdir(releasesDir)) {
    if (name.startsWith(EXTRACT_PREFIX)) await rm(join(releasesDir, name), { recursive: true, force: true })
  }
  const tmp = await mkdtemp(join(releasesDir, EXTRACT_PREFIX))
  // a release directory reads like a clone's: others may read, only the service user writes
  await chmod(tmp, 0o755)
  try {
    const r = await unpackRelease(process.stdin, tmp, { maxBytes, maxEntries })
    await rename(tmp, join(releasesDir, id))
    report({ ok: true, ...r })
    return 0
  } catch (e) {
    // the extraction is synchronous: once it stopped, nothing is left writing in `tmp`
    await rm(tmp, { recursive: true, force: true })
    if (e instanceof ArchiveRefused) {
      report({ refused: e.message })
      return 2
    }
    throw e
  }
}

export const main = async (argv: readonly string[]): Promise<number> => {
  const [command, a, b, c, d] = argv
  try {
    if (command === 'pack' && a !== undefined && c !== undefined) return await pack(a, count(b), c)
    if (command === 'unpack' && a !== undefined && b !== undefined) return await unpack(a, b, count(c), count(d))
    report({ error: `usage: archive-worker pack <releaseDir> <completedAtMs> <envFile> | unpack <releasesDir> <releaseId> <maxBytes> <maxEntries>` })
    return 1
  } catch (e) {
    report({ error: e instanceof Error ? e.message : String(e) })
    return 1
  }
}

process.exitCode = await main(process.argv.slice(2))
