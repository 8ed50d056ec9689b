/**
 * Can the service user reach what it must? As root, repo code runs as the service user: git
 * clones into the releases as that user, `npm ci` and the build run there, PM2 and the services
 * load the agent's env preload and PM2's own code, and a `file://` repository is read by the
 * clone. A directory it cannot enter anywhere above those paths (root's 0700 home, a `mktemp -d`
 * directory) would otherwise fail deep inside git with "Permission denied", blamed on git. This
 * check runs first, before the agent writes anything, and names the directory, its mode and owner.
 *
 * The directories the agent creates and repairs itself (the service directory, releases, logs,
 * PM2's home, the env directory: fetch and switch `ensureDir` them with explicit modes) are not
 * checked: their parents are. Access is decided from the mode bits (owner, group with the user's
 * groups, other), as the kernel does without ACLs; a user not created yet has only "other".
 */
import { realpath, stat } from 'node:fs/promises'
import { userInfo } from 'node:os'
import { dirname, join, parse, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ConfigError, errnoCode } from '../core/errors.js'
import type { Exec } from '../core/exec.js'
import type { Paths } from '../core/paths.js'
import { agentFile } from '../secrets/agent-files.js'
import { PM2_BIN } from '../pm2/cli.js'
import { ARCHIVE_WORKER } from '../releases/archive-process.js'

/** The service user as the kernel sees it; `uid` undefined: not created yet (only "other" applies). */
export interface Who {
  name: string
  uid: number | undefined
  gids: readonly number[]
}

/** enter: search (x) on a directory; read: r on a file; list: r+x on a directory; run: x on a file */
export type Need = 'enter' | 'read' | 'list' | 'run'

export interface Target {
  path: string
  need: Need
  /** why the service user needs it, for the message */
  why: string
  /** the remedy that moves it somewhere reachable */
  elsewhere: string
}

export interface Entry {
  path: string
  mode: number
  uid: number
  gid: number
}

export interface Refusal {
  entry: Entry
  need: Need
  target: Target
}

const BITS: Record<Need, number> = { enter: 1, read: 4, list: 5, run: 1 }

/** Pure: whether `who` has `need` on `entry`, by its mode bits. */
export const allows = (entry: Entry, who: Who, need: Need): boolean => {
  const want = BITS[need]
  const m = entry.mode & 0o777
  const bits = who.uid !== undefined && entry.uid === who.uid ? m >> 6 : who.gids.includes(entry.gid) ? (m >> 3) & 7 : m & 7
  return (bits & want) === want
}

/** Pure: the first entry of a chain (top down, the target last) that `who` cannot pass. */
export const firstRefusal = (chain: readonly Entry[], who: Who, target: Target, targetExists: boolean): Refusal | undefined => {
  for (const [i, entry] of chain.entries()) {
    const need = targetExists && i === chain.length - 1 ? target.need : 'enter'
    if (!allows(entry, who, need)) return { entry, need, target }
  }
  return undefined
}

const modeText = (mode: number): string => `0${(mode & 0o7777).toString(8).padStart(3, '0')}`

const NEED_TEXT: Record<Need, string> = { enter: 'enter', read: 'read', list: 'read and enter', run: 'execute' }

/** Pure: the exit-2 error for a refusal. `owners` names the entry's uid and gid. */
export const refusalError = (r: Refusal, who: Who, owner: { user: string; group: string }): ConfigError => {
  const at = r.entry.path === r.target.path ? r.entry.path : `${r.entry.path}, above ${r.target.path}`
  const fix =
    r.need === 'enter'
      ? `make it traversable (chmod o+x ${r.entry.path})`
      : `give the service user access (chmod o+${r.need === 'list' ? 'rx' : r.need === 'read' ? 'r' : 'x'} ${r.entry.path})`
  return new ConfigError(
    `the service user "${who.name}"${who.uid === undefined ? ' (not created yet)' : ` (uid ${who.uid})`} cannot ${NEED_TEXT[r.need]} ${at} ` +
      `(mode ${modeText(r.entry.mode)}, owner ${owner.user}:${owner.group}); it needs ${r.target.why}: as root, repo code runs as that user`,
    `${r.target.elsewhere}, ${fix}, or run the agent as a non-root user (then everything runs as you)`,
    'SERVICE_USER_CANNOT_REACH',
  )
}

/** What the service user must reach for a run with these paths and repository. */
export const reachTargets = (p: Paths, repository: string): Target[] => {
  const root = `use a --root the service user can reach (e.g. under /srv or /var/tmp; now ${p.root})`
  const agent = 'run an agent installed where the service user can reach it (the release artifact under /opt, as user-data installs it)'
  const targets: Target[] = [
    { path: dirname(p.serviceDir), need: 'enter', why: 'the release directories and service logs below it', elsewhere: root },
    { path: dirname(p.stateDir), need: 'enter', why: "PM2's home below it", elsewhere: root },
    { path: dirname(p.etcDir), need: 'enter', why: 'the env file below it', elsewhere: root },
    { path: agentFile('env-preload.js'), need: 'read', why: "the agent's env preload, which every service process loads", elsewhere: agent },
    { path: agentFile('run-with-env.js'), need: 'read', why: "the agent's wrapper that PM2 starts non-Node services with", elsewhere: agent },
    { path: ARCHIVE_WORKER, need: 'read', why: "the agent's release archive worker, which packs and extracts release cache archives as that user", elsewhere: agent },
    { path: PM2_BIN, need: 'read', why: "PM2's own code, which the service user's PM2 daemon runs", elsewhere: agent },
    { path: process.execPath, need: 'run', why: 'the node binary that runs npm, PM2 and the services', elsewhere: 'install node where every user can run it (e.g. /usr/bin or /usr/local/bin)' },
  ]
  if (repository.startsWith('file://')) {
    targets.push({ path: fileURLToPath(repository), need: 'list', why: `the file:// repository ${repository}, which git clones as that user`, elsewhere: 'move the repository where the service user can read it' })
  }
  return targets
}

/** The existing part of `path`, resolved (a symlinked component is traversed where it points), as
 * the chain of its components from `/` down; `exists` says whether the whole path exists. */
const chainOf = async (path: string): Promise<{ chain: Entry[]; exists: boolean }> => {
  let existing = path
  let exists = true
  for (;;) {
    try {
      existing = await realpath(existing)
      break
    } catch (e) {
      if (errnoCode(e) !== 'ENOENT' && errnoCode(e) !== 'ENOTDIR') throw e
      exists = false
      if (dirname(existing) === existing) break
      existing = dirname(existing)
    }
  }
  const { root } = parse(existing)
  const parts = existing.slice(root.length).split(sep).filter(Boolean)
  const chain: Entry[] = []
  let at = root
  for (const part of ['', ...parts]) {
    at = part ? join(at, part) : at
    const st = await stat(at)
    chain.push({ path: at, mode: st.mode, uid: st.uid, gid: st.gid })
  }
  return { chain, exists }
}

const SYS_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' }

/** Name of a uid or gid from the account databases, or the number. */
const nameOf = async (exec: Exec, db: 'passwd' | 'group', id: number): Promise<string> => {
  const r = await exec.run('getent', [db, String(id)], { env: SYS_ENV, timeoutMs: 10_000 })
  const name = r.exitCode === 0 ? r.stdout.split(':')[0] : undefined
  return name || String(id)
}

/** The service user's uid and groups (`id`), or only its name when it does not exist yet. */
export const whoIs = async (exec: Exec, name: string): Promise<Who> => {
  const u = await exec.run('id', ['-u', name], { env: SYS_ENV, timeoutMs: 10_000 })
  if (u.exitCode !== 0) return { name, uid: undefined, gids: [] }
  const g = await exec.run('id', ['-G', name], { env: SYS_ENV, timeoutMs: 10_000 })
  return { name, uid: Number(u.stdout.trim()), gids: g.stdout.trim().split(/\s+/).filter(Boolean).map(Number) }
}

/** The first target the service user cannot reach, as the exit-2 error to throw; undefined when
 * all are reachable. */
export const checkServiceReach = async (exec: Exec, who: Who, targets: readonly Target[]): Promise<ConfigError | undefined> => {
  for (const target of targets) {
    const { chain, exists } = await chainOf(target.path)
    const r = firstRefusal(chain, who, target, exists)
    if (r) return refusalError(r, who, { user: await nameOf(exec, 'passwd', r.entry.uid), group: await nameOf(exec, 'group', r.entry.gid) })
  }
  return undefined
}

/** For `run` and `plan`: the reach check when the agent is root (then repo code runs as the service
 * user); a non-root agent runs everything as itself, and there is nothing to check. */
export const serviceReachProblem = async (exec: Exec, userName: string, p: Paths, repository: string): Promise<ConfigError | undefined> =>
  userInfo().uid === 0 ? checkServiceReach(exec, await whoIs(exec, userName), reachTargets(p, repository)) : undefined
