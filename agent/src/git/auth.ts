/**
 * The environment git runs in, credentials included. A token or key travels only through the
 * child's environment and a private temp dir, never through argv (readable by every user in
 * /proc/<pid>/cmdline) or a git config file (it would be copied into the release, readable by the
 * service and by anything `npm ci` runs). Nothing of the agent's own environment is inherited.
 */
import { constants } from 'node:fs'
import { chmod, mkdtemp, open, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError } from '../core/errors.js'
import { createScrubber } from '../secrets/redact.js'
import { isCleartextToRemoteHost, redactUrl, type GitRemote } from './url.js'

export type GitCredential =
  | { kind: 'token'; username: string; token: string } // HTTPS basic auth (GitHub: username 'x-access-token')
  | { kind: 'ssh'; privateKey: string; knownHosts?: string } // deploy key (PEM/OpenSSH text)

export interface GitOwner {
  uid?: number
  gid?: number
}

export interface GitSession {
  /** the complete environment of every git child in this session */
  env: Record<string, string>
  /** private dir of root's: git's HOME, and where an ssh key and known_hosts live (0700; 0711
   * when git runs as another user, who may reach its files there but not add or swap any) */
  home: string
  /** masks every form of the credential (token, base64 header, key) in what git printed */
  scrub(text: string): string
}

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
// instances in private subnets often reach the git host only through a proxy
const PROXY_VARS = ['https_proxy', 'HTTPS_PROXY', 'http_proxy', 'HTTP_PROXY', 'no_proxy', 'NO_PROXY']

/** Single-quotes a value for the `sh -c` git runs GIT_SSH_COMMAND through. */
const shQuote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`

const baseEnv = (home: string, timeoutMs: number): Record<string, string> => {
  const env: Record<string, string> = {
    PATH: process.env.PATH || DEFAULT_PATH,
    HOME: home,
    // error classification reads git's English messages
    LANG: 'C',
    LC_ALL: 'C',
    // never wait for a human: a prompt on a boot path hangs until the lifecycle hook times out
    GIT_TERMINAL_PROMPT: '0',
    GIT_ASKPASS: '/bin/true',
    // HOME is empty, and with no system config either, no credential helper, url rewrite or
    // hook from the box can change where our header goes or run code
    GIT_CONFIG_NOSYSTEM: '1',
    // curl in git-remote-http gives up on a stalled server by itself, so no helper process
    // outlives the git we kill at the deadline
    GIT_HTTP_LOW_SPEED_LIMIT: '1',
    GIT_HTTP_LOW_SPEED_TIME: String(Math.max(1, Math.ceil(timeoutMs / 1000))),
  }
  for (const k of PROXY_VARS) {
    const v = process.env[k]
    if (v) env[k] = v
  }
  return env
}

const credentialMismatch = (remote: GitRemote, cred: GitCredential) =>
  new ConfigError(
    `a ${cred.kind} credential cannot be used with the ${remote.transport} repository URL "${redactUrl(remote.url)}"`,
    cred.kind === 'token'
      ? 'use an https:// repository URL with a token, or give a deploy key for ssh'
      : 'use an ssh repository URL (git@host:owner/repo.git) with a deploy key, or give a token for https',
    'GIT_CREDENTIAL_MISMATCH',
  )

const tokenEnv = (remote: GitRemote, cred: Extract<GitCredential, { kind: 'token' }>) => {
  if (remote.transport !== 'http' || remote.origin === undefined) throw credentialMismatch(remote, cred)
  if (isCleartextToRemoteHost(remote)) {
    throw new ConfigError(
      `refusing to send a token over plain http to "${redactUrl(remote.url)}"`,
      'use the https:// URL of the repository',
      'GIT_INSECURE_TRANSPORT',
    )
  }
  const basic = Buffer.from(`${cred.username}:${cred.token}`).toString('base64')
  return {
    // git >= 2.31 reads config from these variables with command-line precedence; scoped to the
    // origin so a redirect to another host does not receive the header
    env: {
      GIT_CONFIG_COUNT: '1',
      GIT_CONFIG_KEY_0: `http.${remote.origin}.extraHeader`,
      GIT_CONFIG_VALUE_0: `Authorization: Basic ${basic}`,
    },
    secrets: [cred.token, basic, `${cred.username}:${cred.token}`],
  }
}

const sshEnv = async (
  remote: GitRemote,
  cred: Extract<GitCredential, { kind: 'ssh' }>,
  home: string,
  owner: GitOwner,
  timeoutMs: number,
) => {
  if (remote.transport !== 'ssh') throw credentialMismatch(remote, cred)
  const keyFile = join(home, 'deploy_key')
  const knownHosts = join(home, 'known_hosts')
  // OpenSSH rejects a key without its final newline ("invalid format"); secrets stores mangle both
  const key = `${cred.privateKey.replaceAll('\r\n', '\n').trimEnd()}\n`
  // ssh refuses a key file that belongs to someone else: owned by the user git runs as
  await writePrivate(keyFile, key, owner)
  await writePrivate(knownHosts, cred.knownHosts ?? '', owner)
  const ssh = [
    'ssh',
    // ssh reads /etc/ssh/ssh_config and the running user's ~/.ssh/config whatever HOME says: a
    // `Host *` ProxyCommand there would run on our connection; no config file but our options
    ['-F', '/dev/null'],
    ['-i', shQuote(keyFile)],
    ['-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes'],
    ['-o', `ConnectTimeout=${Math.max(1, Math.ceil(timeoutMs / 1000))}`],
    // without pinned host keys, trust on first use (the file is fresh each run)
    ['-o', `StrictHostKeyChecking=${cred.knownHosts === undefined ? 'accept-new' : 'yes'}`],
    ['-o', `UserKnownHostsFile=${shQuote(knownHosts)}`],
  ]
  // the scrubber masks each line of the key too
  return { env: { GIT_SSH_COMMAND: ssh.flat().join(' ') }, secrets: [key] }
}

/**
 * A file:// repository owned by another user (root's checkout, cloned as the service user) is
 * refused by git as of 2.35.2 ("dubious ownership") unless listed in safe.directory, which git
 * 2.39 reads only from global or system config, not from GIT_CONFIG_*. The session HOME is ours
 * and private, so a .gitconfig there trusts exactly this one repository for this one call.
 */
const trustLocalRepository = async (url: string, home: string, owner: GitOwner): Promise<void> => {
  const path = decodeURIComponent(new URL(url).pathname)
  const file = join(home, '.gitconfig')
  await writePrivate(file, `[safe]\n\tdirectory = ${path.replace(/\/+$/, '')}\n`, owner)
}

/**
 * A new 0600 file in the session dir, owned by `owner`: created (never an existing name, never
 * through a link) and chowned on its descriptor, while the dir is still root's alone.
 */
const writePrivate = async (file: string, text: string, owner: GitOwner): Promise<void> => {
  const fh = await open(file, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW, 0o600)
  try {
    await fh.writeFile(text)
    if (owner.uid !== undefined) await fh.chown(owner.uid, owner.gid ?? -1)
  } finally {
    await fh.close()
  }
}

/**
 * Runs `fn` with a fresh private session dir and the environment for `remote` and `cred`;
 * the dir (and the key in it) is removed whatever `fn` does.
 *
 * The dir stays root's: git running as the service user gets search permission (0711) to reach
 * the files made for it, and nothing more. Were the dir that user's, a compromised service
 * watching /tmp could swap a file root is about to write or chown for a link (a chown of
 * /etc/passwd), or fill the dir with links for root's recursive removal to walk.
 */
export const withGitSession = async <T>(
  remote: GitRemote | undefined,
  cred: GitCredential | undefined,
  owner: GitOwner,
  timeoutMs: number,
  fn: (session: GitSession) => Promise<T>,
): Promise<T> => {
  const home = await mkdtemp(join(tmpdir(), 'bootstrap-git-')) // mkdtemp creates it 0700
  try {
    const extra =
      cred === undefined || remote === undefined
        ? { env: {}, secrets: [] as string[] }
        : cred.kind === 'token'
          ? tokenEnv(remote, cred)
          : await sshEnv(remote, cred, home, owner, timeoutMs)
    if (remote?.transport === 'file') await trustLocalRepository(remote.url, home, owner)
    if (owner.uid !== undefined) await chmod(home, 0o711)
    const scrubber = createScrubber()
    scrubber.add(extra.secrets)
    return await fn({ env: { ...baseEnv(home, timeoutMs), ...extra.env }, home, scrub: scrubber.scrub })
  } finally {
    await rm(home, { recursive: true, force: true })
  }
}
