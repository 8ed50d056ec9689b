/**
 * Test fixture: git over SSH the way a git host serves a deploy key, i.e. the real OpenSSH
 * `sshd` on 127.0.0.1 and a free port, public-key auth only, for one system user whose login
 * shell is `git-shell` (so the key can run git-upload-pack and nothing else). Host key and client
 * (deploy) key are fresh per server; the client's private key exists only in memory once the
 * server is up, so a scan of the disk for it finds only what the agent left behind.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from './sandbox.js'

const SSHD = '/usr/sbin/sshd'
const GIT_SHELL = '/usr/bin/git-shell'
/** the account the deploy key logs in as (`git@` in the URL is only ssh's default user name) */
export const SSH_GIT_USER = 'bootstrap-git'

export interface SshKeyPair {
  /** OpenSSH private key text, as a secrets store would hold it */
  privateKey: string
  /** `ssh-ed25519 AAAA... comment` */
  publicKey: string
}

export interface SshGitServer {
  port: number
  /** `ssh://bootstrap-git@127.0.0.1:<port><abs path>`: sshd logs in the URL's user, so it is
   * the git account (a git host's `git@` is the same idea with its own account name) */
  url(repoPath: string): string
  /** the deploy key the server accepts */
  clientKey: SshKeyPair
  /** the known_hosts line that pins this server's host key: `[127.0.0.1]:<port> ssh-ed25519 ...` */
  knownHosts: string
  /** sshd's own log so far (LogLevel VERBOSE): connections, accepted and failed keys */
  log(): string
  stop(): Promise<void>
}

const run = (file: string, args: string[]) =>
  execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })

/** A fresh ed25519 key pair made by ssh-keygen; the files are removed, only the text remains. */
export const generateSshKey = (comment = 'bootstrap-test-deploy-key'): SshKeyPair => {
  const dir = mkdtempSync(join(tmpdir(), 'ssh-keygen-'))
  try {
    const file = join(dir, 'key')
    run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file])
    return { privateKey: readFileSync(file, 'utf8'), publicKey: readFileSync(`${file}.pub`, 'utf8').trim() }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

const userExists = (name: string) => spawnSync('id', ['-u', name], { stdio: 'ignore' }).status === 0

/**
 * The git account, created once and reused: git-shell as its shell, no home. useradd --system
 * locks the password ('!'), and sshd without PAM refuses locked accounts even for a key, so the
 * password field becomes '*' (no password can match it, but the account is not "locked").
 */
const ensureGitUser = (): { uid: number; gid: number } => {
  if (!userExists(SSH_GIT_USER)) {
    const r = spawnSync(
      'useradd',
      ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', GIT_SHELL, SSH_GIT_USER],
      { encoding: 'utf8' },
    )
    // exit 9: another test file created it meanwhile
    if (r.status !== 0 && r.status !== 9) throw new Error(`useradd ${SSH_GIT_USER} failed (exit ${r.status}): ${r.stderr}`)
  }
  run('usermod', ['--password', '*', '--shell', GIT_SHELL, SSH_GIT_USER])
  return { uid: Number(run('id', ['-u', SSH_GIT_USER])), gid: Number(run('id', ['-g', SSH_GIT_USER])) }
}

/** OpenSSH 9.8 penalises sources that fail auth (our wrong-key tests) unless told not to. */
const sshdVersion = (): [number, number] => {
  // sshd has no version flag: an unknown one prints the usage, which names the version
  const out = spawnSync(SSHD, ['-V'], { encoding: 'utf8' }).stderr
  const m = /OpenSSH_(\d+)\.(\d+)/.exec(out)
  if (!m) throw new Error(`cannot tell the version of ${SSHD} (is openssh-server installed? npm test installs it): ${out}`)
  return [Number(m[1]), Number(m[2])]
}

const sshdConfig = (o: { port: number; dir: string; hostKey: string; authorizedKeys: string; gitConfig: string; version: [number, number] }) => {
  const [major, minor] = o.version
  return [
    `ListenAddress 127.0.0.1:${o.port}`,
    `HostKey ${o.hostKey}`,
    `PidFile ${join(o.dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${o.authorizedKeys}`,
    // the temp dir is root's: sshd's ownership checks on the key file's path would reject it
    'StrictModes no',
    `AllowUsers ${SSH_GIT_USER}`,
    'PermitRootLogin no',
    'AuthenticationMethods publickey',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'PermitTTY no',
    'X11Forwarding no',
    'AllowTcpForwarding no',
    'AllowAgentForwarding no',
    'PermitUserEnvironment no',
    // git sends the wire protocol version (v2) this way, as to GitHub
    'AcceptEnv GIT_PROTOCOL',
    // the repos are root's, and git >= 2.35.2 refuses to serve a repository another user owns
    // ("dubious ownership") unless safe.directory, read only from global or system config, says
    // so: this server's git sessions get a global config of their own that trusts them
    `SetEnv GIT_CONFIG_GLOBAL=${o.gitConfig}`,
    'LogLevel VERBOSE',
    ...(major > 9 || (major === 9 && minor >= 8) ? ['PerSourcePenalties no'] : []),
    '',
  ].join('\n')
}

const untilListening = (port: number, child: ChildProcess, stderr: () => string, timeoutMs = 10_000): Promise<void> =>
  new Promise((resolve, reject) => {
    const deadline = Date.now() + timeoutMs
    let done = false
    const finish = (err?: Error) => {
      if (done) return
      done = true
      child.off('exit', onExit)
      if (err) reject(err)
      else resolve()
    }
    const onExit = (code: number | null, signal: string | null) =>
      finish(new Error(`sshd exited (${code ?? signal}) before accepting connections:\n${stderr()}`))
    child.once('exit', onExit)
    const probe = () => {
      if (done) return
      const s = connect(port, '127.0.0.1')
      s.once('connect', () => {
        s.destroy()
        finish()
      })
      s.once('error', () => {
        s.destroy()
        if (Date.now() > deadline) finish(new Error(`sshd did not listen on 127.0.0.1:${port} within ${timeoutMs} ms:\n${stderr()}`))
        else setTimeout(probe, 20)
      })
    }
    probe()
  })

export const startSshGitServer = async (opts: { repoRoot: string }): Promise<SshGitServer> => {
  const version = sshdVersion()
  const user = ensureGitUser()
  // the git account reads the bare repositories; their parent dirs must be traversable already
  chmodSync(opts.repoRoot, 0o755)
  run('chmod', ['-R', 'a+rX', opts.repoRoot])
  const probe = spawnSync('/usr/bin/test', ['-r', opts.repoRoot, '-a', '-x', opts.repoRoot], user)
  if (probe.status !== 0) throw new Error(`${SSH_GIT_USER} cannot read ${opts.repoRoot}: make every parent dir traversable (0755)`)
  // sshd's privilege separation dir; the package makes it only when its service starts
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 })

  // not named bootstrap-git-*: that is the agent's session dir prefix, which the tests scan
  const dir = mkdtempSync(join(tmpdir(), 'ssh-git-server-'))
  chmodSync(dir, 0o755) // sshd reads authorized_keys as the git user
  const hostKey = join(dir, 'host_ed25519_key')
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bootstrap-test-host', '-f', hostKey])
  const hostPublic = readFileSync(`${hostKey}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' ')
  const clientKey = generateSshKey()
  const authorizedKeys = join(dir, 'authorized_keys')
  writeFileSync(authorizedKeys, `${clientKey.publicKey}\n`, { mode: 0o644 })
  const gitConfig = join(dir, 'gitconfig')
  writeFileSync(gitConfig, '[safe]\n\tdirectory = *\n', { mode: 0o644 })

  let child: ChildProcess | undefined
  let port = 0
  let stderr = ''
  // the free port may be taken between freePort() and sshd's bind: try another one
  for (let attempt = 1; ; attempt++) {
    port = await freePort()
    const config = join(dir, 'sshd_config')
    writeFileSync(config, sshdConfig({ port, dir, hostKey, authorizedKeys, gitConfig, version }), { mode: 0o600 })
    stderr = ''
    const c = spawn(SSHD, ['-D', '-e', '-f', config], {
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' },
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    c.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    try {
      await untilListening(port, c, () => stderr)
      child = c
      break
    } catch (e: unknown) {
      c.kill('SIGKILL')
      if (attempt >= 3 || !/Address already in use|Cannot bind/.test(stderr)) {
        rmSync(dir, { recursive: true, force: true })
        throw e
      }
    }
  }
  const sshd = child

  return {
    port,
    url: (repoPath) => `ssh://${SSH_GIT_USER}@127.0.0.1:${port}${repoPath.startsWith('/') ? '' : '/'}${repoPath}`,
    clientKey,
    knownHosts: `[127.0.0.1]:${port} ${hostPublic}`,
    log: () => stderr,
    async stop() {
      if (sshd.exitCode === null && sshd.signalCode === null) {
        const exited = new Promise<void>((resolve) => sshd.once('exit', () => resolve()))
        sshd.kill('SIGTERM')
        await exited
      }
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
