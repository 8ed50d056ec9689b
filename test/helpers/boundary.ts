/**
 * The line between root and the service user (design.md invariant 5), as tests check it: a
 * root-only canary and root-owned targets outside the service's directories, a snapshot of who
 * owns what (owner, mode, content) to prove nothing there changed, a scan for the canary's text
 * in every file under the sandbox and every output, and a way to act as the service user (a
 * compromised service planting links, hard links and FIFOs while it runs).
 */
import { createHash, randomBytes } from 'node:crypto'
import { execFileSync, spawnSync } from 'node:child_process'
import { chmodSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export interface Outside {
  /** a directory the service user can traverse, root's */
  dir: string
  /** a root-only file (0600, root): what a link planted by the service would point at */
  canary: string
  /** its content: must never appear in any output, log, state file or error */
  value: string
  /** a root-owned directory with a file in it: a chown, chmod or delete target */
  ownedDir: string
  /** a root-owned 0644 file: a write target */
  target: string
}

/** Root-owned things outside the service's directories, for a sandbox in `dir`. */
export const makeOutside = (dir: string): Outside => {
  const o = join(dir, 'outside')
  mkdirSync(join(o, 'owned-dir'), { recursive: true })
  chmodSync(o, 0o755)
  const value = `canary-${randomBytes(12).toString('hex')}`
  const canary = join(o, 'canary.txt')
  // a JSON string: a JSON error or a schema error would quote all of it (V8 quotes only the first
  // characters of text that is no JSON at all)
  writeFileSync(canary, `${JSON.stringify(value)}\n`, { mode: 0o600 })
  writeFileSync(join(o, 'owned-dir/keep.txt'), 'root keeps this\n', { mode: 0o644 })
  const target = join(o, 'target.txt')
  writeFileSync(target, 'root wrote this\n', { mode: 0o644 })
  return { dir: o, canary, value, ownedDir: join(o, 'owned-dir'), target }
}

export type Snapshot = Map<string, string>

/** owner, mode and content (sha256) of `paths` and everything below them, links not followed */
export const snapshot = (paths: string[]): Snapshot => {
  const s: Snapshot = new Map()
  const visit = (p: string) => {
    const st = lstatSync(p, { throwIfNoEntry: false })
    if (!st) return s.set(p, 'missing')
    const what = st.isFile() ? createHash('sha256').update(readFileSync(p)).digest('hex').slice(0, 16) : st.isDirectory() ? 'dir' : 'other'
    s.set(p, `${st.uid}:${st.gid} ${(st.mode & 0o7777).toString(8)} ${what}`)
    if (st.isDirectory()) for (const n of readdirSync(p)) visit(join(p, n))
  }
  for (const p of paths) visit(p)
  return s
}

/** only the directories themselves (their contents change with every run) */
export const snapshotDirs = (paths: string[]): Snapshot =>
  new Map(paths.map(p => {
    const st = lstatSync(p, { throwIfNoEntry: false })
    return [p, st ? `${st.uid}:${st.gid} ${(st.mode & 0o7777).toString(8)} ${st.isSymbolicLink() ? 'link' : st.isDirectory() ? 'dir' : 'other'}` : 'missing']
  }))

/** What differs between two snapshots, one line per path. */
export const changes = (before: Snapshot, after: Snapshot): string[] =>
  [...new Set([...before.keys(), ...after.keys()])].filter(k => before.get(k) !== after.get(k)).map(k => `${k}: ${before.get(k) ?? 'absent'} -> ${after.get(k) ?? 'absent'}`)

/**
 * Every place the canary's text was found: each regular file under `root` (links not followed;
 * the canary itself, and hard links to it, are where it belongs) and each named text.
 */
export const canarySeen = (o: Outside, root: string, texts: Record<string, string>): string[] => {
  const own = statSync(o.canary)
  const found: string[] = []
  const walk = (d: string) => {
    for (const n of readdirSync(d)) {
      const p = join(d, n)
      const st = lstatSync(p)
      if (st.isDirectory()) walk(p)
      else if (st.isFile() && !(st.ino === own.ino && st.dev === own.dev) && readFileSync(p).includes(o.value)) found.push(p)
    }
  }
  walk(root)
  for (const [name, text] of Object.entries(texts)) if (text.includes(o.value)) found.push(name)
  return found
}

/** uid and gid of the service user, from a directory it owns */
export const serviceUserOf = (ownedDir: string): { uid: number; gid: number } => {
  const st = statSync(ownedDir)
  if (st.uid === 0) throw new Error(`${ownedDir} belongs to root: not the service user's`)
  return { uid: st.uid, gid: st.gid }
}

/** Runs a command as the service user, as a compromised service would; throws when it fails. */
export const asService = (user: { uid: number; gid: number }, file: string, args: string[], input?: string): void => {
  const r = spawnSync(file, args, { uid: user.uid, gid: user.gid, encoding: 'utf8', env: { PATH: '/usr/bin:/bin' }, ...(input === undefined ? {} : { input }) })
  if (r.status !== 0) throw new Error(`${file} ${args.join(' ')} as uid ${user.uid} failed (${r.status}): ${r.stderr}`)
}

/** mkfifo, as the service user (Node has none) */
export const fifoAsService = (user: { uid: number; gid: number }, path: string): void => asService(user, 'mkfifo', [path])

/** A hard link to the root-only canary where the service's file was. The service user cannot make
 * it where fs.protected_hardlinks is 1 (this machine); where it is 0 it can, so the test makes it
 * as root, as that service would. */
export const hardLinkCanary = (o: Outside, path: string): void => {
  execFileSync('ln', ['-f', o.canary, path])
}
