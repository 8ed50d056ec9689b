/**
 * The Git seam: the only module that runs git (through simple-git). Three calls, each bounded by
 * a per-attempt deadline and retried with jittered backoff only when the failure is transient.
 * Credentials reach git through `withGitSession` alone (see git/auth.ts for why).
 */
import { constants } from 'node:fs'
import { mkdir, open, readdir, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import pRetry from 'p-retry'
import { GitError, simpleGit } from 'simple-git'
import { AgentError, errnoCode, isAgentError, messageOf } from '../core/errors.js'
import { createExec, type Exec } from '../core/exec.js'
import { removeTree } from '../core/remove-tree.js'
import { withGitSession, type GitCredential, type GitOwner, type GitSession } from './auth.js'
import { tailText } from '../core/evidence.js'
import { classifyGitFailure, gitTimeout } from './errors.js'
import { parseRemote } from './url.js'

export type { GitCredential } from './auth.js'

export interface GitOptions {
  /** deadline of one attempt of one git command */
  timeoutMs: number
  /** total attempts for transient failures (1 = no retry) */
  attempts: number
  onRetry?: (info: { attempt: number; error: string }) => void
  /** bounds of the jittered exponential backoff between attempts (default 1 s .. 15 s) */
  backoff?: { minMs: number; maxMs: number }
  /** runs `rm` for a failed clone's leftovers, as the target's owner (core/remove-tree.ts) */
  exec?: Exec
}

export interface CloneTarget {
  dir: string
  uid?: number
  gid?: number
}

export interface Git {
  /** commit SHA the branch points at on the remote, or undefined when the branch does not exist */
  headOf(url: string, branch: string, cred?: GitCredential): Promise<string | undefined>
  /** names of the remote's branches; none for an empty repository */
  branches(url: string, cred?: GitCredential): Promise<string[]>
  /** shallow (--depth 1 --single-branch --no-tags) clone of `branch` into target.dir (which must not exist or be empty); returns the checked-out commit.
   * On failure target.dir does not exist. */
  cloneBranch(url: string, branch: string, target: CloneTarget, cred?: GitCredential): Promise<{ commit: string }>
  /** commit checked out in an existing clone (HEAD) */
  headCommit(dir: string): Promise<string>
}

interface RunContext {
  cwd: string
  owner: GitOwner
  /** what the messages name: a credential-free URL or a directory */
  url: string
  branch?: string
}

const ownerOpts = (o: GitOwner) => ({
  ...(o.uid === undefined ? {} : { uid: o.uid }),
  ...(o.gid === undefined ? {} : { gid: o.gid }),
})

/** The session, pinned to the repository in `dir`: without GIT_DIR, git looking at a directory
 * that is not a clone would walk up and answer for whatever repository contains it. */
const inRepo = (s: GitSession, dir: string): GitSession => ({ ...s, env: { ...s.env, GIT_DIR: join(dir, '.git') } })

/** One git command in `session`, killed at the deadline; any failure becomes an AgentError. */
const runGit = async (session: GitSession, ctx: RunContext, args: string[], timeoutMs: number) => {
  const abort = new AbortController()
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    abort.abort()
  }, timeoutMs)
  const git = simpleGit({
    baseDir: ctx.cwd,
    abort: abort.signal,
    spawnOptions: ownerOpts(ctx.owner),
    // simple-git refuses GIT_* variables it was not told about; the whole env is ours
    allowEnvironment: Object.keys(session.env),
    unsafe: { allowUnsafeAskPass: true, allowUnsafeConfigEnvCount: true, allowUnsafeSshCommand: true },
  }).env(session.env)
  try {
    return await git.raw(args)
  } catch (e: unknown) {
    const failure = { url: ctx.url, branch: ctx.branch, detail: '' }
    if (timedOut) throw gitTimeout(failure, timeoutMs)
    failure.detail = session.scrub(e instanceof GitError ? e.message : messageOf(e))
    const err = classifyGitFailure(failure, timeoutMs)
    const text = tailText(failure.detail)
    if (text) err.evidence.push({ kind: 'git', source: `git ${args[0] ?? ''} stderr`, text })
    throw err
  } finally {
    clearTimeout(timer)
  }
}

/** Refuses to clone over anything: a non-empty target may be a release someone still uses. */
const assertCloneTarget = async ({ dir, uid, gid }: CloneTarget) => {
  // git as a uid with root's group would leave root-group files in the release
  if ((uid === undefined) !== (gid === undefined)) {
    throw new AgentError(`clone target "${dir}" has a uid or a gid but not both`, {
      code: 'GIT_TARGET_INVALID',
      remedy: 'pass both the uid and the gid of the service user',
    })
  }
  let entries: string[]
  try {
    entries = await readdir(dir)
  } catch (e: unknown) {
    if (errnoCode(e) === 'ENOENT') return
    throw new AgentError(`cannot use "${dir}" as a clone target: ${messageOf(e)}`, {
      code: 'GIT_TARGET_INVALID',
      remedy: 'give a path to a missing or empty directory the agent can write',
      cause: e,
    })
  }
  if (entries.length > 0) {
    throw new AgentError(`clone target "${dir}" is not empty`, {
      code: 'GIT_TARGET_NOT_EMPTY',
      remedy: 'clone into a fresh release directory; remove the leftover directory if it is not in use',
    })
  }
}

/**
 * The target exists and belongs to the service user, so git running as that user can fill it.
 * Its parent (a release directory's, `releases/`) is that user's too: the directory is created
 * in place (never through a link: mkdir does not follow one) and its owner set on the open
 * directory, so a link swapped in between cannot turn the chown into a chown of any path.
 */
const prepareCloneTarget = async (t: CloneTarget) => {
  await mkdir(dirname(t.dir), { recursive: true, mode: 0o755 })
  await mkdir(t.dir, { mode: 0o755 }).catch((e: unknown) => {
    if (errnoCode(e) !== 'EEXIST') throw e
  })
  if (t.uid === undefined) return
  const dir = await open(t.dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW).catch((e: unknown) => {
    throw new AgentError(`cannot use "${t.dir}" as a clone target: ${messageOf(e)} (a link or a file where the directory belongs)`, {
      code: 'GIT_TARGET_INVALID',
      remedy: `remove ${t.dir}: the agent creates it`,
      cause: e,
    })
  })
  try {
    await dir.chown(t.uid, t.gid ?? -1)
  } finally {
    await dir.close()
  }
}

export const createGit = (opts: GitOptions): Git => {
  const { timeoutMs } = opts
  const exec = opts.exec ?? createExec()
  const backoff = opts.backoff ?? { minMs: 1000, maxMs: 15_000 }

  const retrying = <T>(fn: () => Promise<T>): Promise<T> =>
    pRetry(fn, {
      retries: Math.max(0, opts.attempts - 1),
      factor: 2,
      minTimeout: backoff.minMs,
      maxTimeout: backoff.maxMs,
      randomize: true,
      shouldRetry: (e) => isAgentError(e) && e.retryable,
      onFailedAttempt: (e) => {
        // p-retry calls this for final and non-retryable failures too; only report real retries
        if (isAgentError(e) && e.retryable && e.retriesLeft > 0) {
          opts.onRetry?.({ attempt: e.attemptNumber, error: e.message })
        }
      },
    })

  return {
    async headOf(url, branch, cred) {
      const remote = parseRemote(url)
      const ref = `refs/heads/${branch}`
      return withGitSession(remote, cred, {}, timeoutMs, (s) =>
        retrying(async () => {
          const ctx = { cwd: s.home, owner: {}, url: remote.url, branch }
          const out = await runGit(s, ctx, ['ls-remote', '--heads', '--', remote.url, ref], timeoutMs)
          // ls-remote patterns match ref name tails (`x/refs/heads/main` too): keep exact only
          const hit = out
            .split('\n')
            .map((line) => line.split('\t'))
            .find(([, name]) => name === ref)
          return hit?.[0]
        }),
      )
    },

    async branches(url, cred) {
      const remote = parseRemote(url)
      return withGitSession(remote, cred, {}, timeoutMs, (s) =>
        retrying(async () => {
          const out = await runGit(s, { cwd: s.home, owner: {}, url: remote.url }, ['ls-remote', '--heads', '--', remote.url], timeoutMs)
          return out
            .split('\n')
            .map((line) => line.split('\t')[1] ?? '')
            .filter((name) => name.startsWith('refs/heads/'))
            .map((name) => name.slice('refs/heads/'.length))
        }),
      )
    },

    async cloneBranch(url, branch, target, cred) {
      const remote = parseRemote(url)
      await assertCloneTarget(target)
      const owner = { uid: target.uid, gid: target.gid }
      return withGitSession(remote, cred, owner, timeoutMs, (s) =>
        retrying(async () => {
          await prepareCloneTarget(target)
          const ctx = { cwd: s.home, owner, url: remote.url, branch }
          try {
            const args = ['clone', '--quiet', '--depth', '1', '--single-branch', '--no-tags']
            await runGit(s, ctx, [...args, '--branch', branch, '--', remote.url, target.dir], timeoutMs)
            const inTarget = { ...ctx, cwd: target.dir }
            const head = await runGit(inRepo(s, target.dir), inTarget, ['rev-parse', 'HEAD'], timeoutMs)
            return { commit: head.trim() }
          } catch (e: unknown) {
            // the next attempt (or the next run) must find the target missing, not half cloned;
            // removed by its owner: git ran as that user, whose tree it now is
            await removeTree(exec, target.dir, target.uid === undefined ? undefined : { uid: target.uid, gid: target.gid ?? target.uid })
            throw e
          }
        }),
      )
    },

    async headCommit(dir) {
      let st
      try {
        st = await stat(dir)
      } catch (e: unknown) {
        throw new AgentError(`no clone at "${dir}": ${messageOf(e)}`, {
          code: 'GIT_NOT_A_CLONE',
          remedy: 'run a full deploy to create the release again',
          cause: e,
        })
      }
      // root never runs git in a repo another user owns: its config could run that user's code
      // (git itself refuses with "dubious ownership"); run as the owner instead
      const owner = process.getuid?.() === 0 && st.uid !== 0 ? { uid: st.uid, gid: st.gid } : {}
      return withGitSession(undefined, undefined, owner, timeoutMs, async (s) => {
        const out = await runGit(inRepo(s, dir), { cwd: dir, owner, url: dir }, ['rev-parse', 'HEAD'], timeoutMs)
        return out.trim()
      })
    },
  }
}
