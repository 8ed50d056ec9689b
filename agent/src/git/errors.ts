/**
 * What a failed git run means, read from git's own (LANG=C) stderr: a stable code, whether a
 * retry can help, and what the operator should do. Only network trouble is retried; a bad
 * credential or a missing repo or branch fails at once, because retrying cannot fix it and
 * only delays the lifecycle hook's answer.
 */
import { AgentError, ConfigError, ExitCode } from '../core/errors.js'

export interface GitFailureContext {
  /** credential-free URL */
  url: string
  branch?: string
  /** the scrubbed stderr of git */
  detail: string
}

const AUTH = [
  /Authentication failed/i,
  /HTTP Basic: Access denied/i,
  /could not read (Username|Password)/i,
  /returned error: 40[13]\b/,
  /Permission denied \(/, // ssh: "Permission denied (publickey)."
  /Invalid username or (password|token)/i,
]
const HOST_KEY = [/Host key verification failed/, /REMOTE HOST IDENTIFICATION HAS CHANGED/]
const REPO_NOT_FOUND = [
  /Repository not found/i,
  /repository '.*' not found/i,
  /does not appear to be a git repository/i,
  /returned error: 404\b/,
]
const BRANCH_NOT_FOUND = [/Remote branch .* not found in upstream/i]
const TIMEOUT = [/Operation too slow/i, /timed out/i]
const UNREACHABLE = [
  /Could not resolve host/i,
  /Connection refused/i,
  /Connection reset/i,
  /Failed to connect/i,
  /returned error: 5\d\d\b/,
  /RPC failed/i,
  /early EOF/i,
  /remote end hung up/i,
  /Empty reply from server/i,
  /transfer closed/i,
  /ssh: connect to host/i,
  /Network is unreachable/i,
  /No route to host/i,
]

const matches = (patterns: RegExp[], text: string) => patterns.some((p) => p.test(text))

const where = (c: GitFailureContext) => (c.branch === undefined ? `"${c.url}"` : `branch "${c.branch}" of "${c.url}"`)

export interface MissingBranchContext {
  /** where the branch name came from, e.g. `environment "prod" in the branch map` */
  origin?: string
  /** how to point the agent at another branch, e.g. `fix the Branch tag` */
  fix?: string
  /** the branches the remote does have */
  branches?: readonly string[]
}

const MAX_LISTED = 10
const listBranches = (names: readonly string[]) => {
  const shown = names.slice(0, MAX_LISTED).map((b) => `"${b}"`).join(', ')
  return names.length > MAX_LISTED ? `${shown} and ${names.length - MAX_LISTED} more` : shown
}

/** An error for `branch` missing on the remote: bad input, exit 2, never retried. */
export const branchNotFound = (url: string, branch: string, m: MissingBranchContext = {}) =>
  new ConfigError(
    `branch "${branch}"${m.origin ? ` (from ${m.origin})` : ''} does not exist in "${url}"` +
      (m.branches?.length ? `; its branches are ${listBranches(m.branches)}` : ''),
    `push the branch, or ${m.fix ?? 'fix the Environment/Branch tag or the environment-to-branch map'}`,
    'GIT_BRANCH_NOT_FOUND',
  )

/** A repository without a single branch (created, never pushed to): bad input, exit 2. */
export const repoEmpty = (url: string, branch: string) =>
  new ConfigError(
    `git repository "${url}" is empty (no branches, no commits): expected branch "${branch}" with the application`,
    `push the application to branch "${branch}" of "${url}", or fix the repository URL (Repository tag or agent configuration)`,
    'GIT_REPO_EMPTY',
  )

export const gitTimeout = (c: GitFailureContext, timeoutMs: number) =>
  new AgentError(`git gave no answer for ${where(c)} within ${timeoutMs} ms`, {
    code: 'GIT_TIMEOUT',
    remedy: 'check the network path to the git host (security groups, NAT, proxy) or raise the git timeout',
    retryable: true,
  })

/** git's verdict lines (`fatal:`, `remote:`...) rather than its advice ("Please make sure...") */
const summary = (stderr: string) => {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean)
  const verdicts = lines.filter((l) => /^(fatal|error|remote|ssh|[\w.-]+@[\w.-]+):/.test(l))
  const picked = (verdicts.length > 0 ? verdicts : lines).slice(-3)
  return picked.length === 0 ? '' : `: ${picked.join(' | ')}`
}

export const classifyGitFailure = (c: GitFailureContext, timeoutMs: number): AgentError => {
  const d = c.detail
  const detail = summary(d)
  if (matches(BRANCH_NOT_FOUND, d) && c.branch !== undefined) return branchNotFound(c.url, c.branch)
  if (matches(HOST_KEY, d)) {
    return new AgentError(`the ssh host key of "${c.url}" was rejected${detail}`, {
      code: 'GIT_HOST_KEY_REJECTED',
      remedy: 'check the known_hosts entry in the git credential secret against the host\'s published keys',
    })
  }
  if (matches(AUTH, d)) {
    return new AgentError(`git could not authenticate to "${c.url}"${detail}`, {
      code: 'GIT_AUTH_FAILED',
      remedy:
        'check the token (or deploy key) in the git credential secret: not expired, and granted read access to this repository',
    })
  }
  if (matches(REPO_NOT_FOUND, d)) {
    // a wrong URL (or a credential without access to the repository): retrying cannot fix it
    return new AgentError(`git repository "${c.url}" was not found${detail}`, {
      code: 'GIT_REPO_NOT_FOUND',
      exitCode: ExitCode.badInput,
      remedy:
        'check the repository URL (Repository tag or agent configuration); a private repository also answers "not found" to a credential without access to it',
    })
  }
  if (matches(TIMEOUT, d)) return gitTimeout(c, timeoutMs)
  if (matches(UNREACHABLE, d)) {
    return new AgentError(`git could not reach ${where(c)}${detail}`, {
      code: 'GIT_UNREACHABLE',
      remedy: 'check DNS and the network path to the git host (security groups, NAT, proxy), then run again',
      retryable: true,
    })
  }
  return new AgentError(`git failed for ${where(c)}${detail}`, {
    code: 'GIT_FAILED',
    remedy: 'read the git message above; run the same git command by hand on the instance to see more',
  })
}
