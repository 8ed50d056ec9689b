import { randomBytes } from 'node:crypto'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { isAgentError } from '../../../agent/src/core/errors.js'
import { withGitSession, type GitCredential, type GitSession } from '../../../agent/src/git/auth.js'
import { parseRemote } from '../../../agent/src/git/url.js'
import { rejected } from '../../helpers/thrown.js'

const token = `tok-${randomBytes(12).toString('hex')}`
const https = parseRemote('https://git.example.com/o/r.git')
const ssh = parseRemote('git@git.example.com:o/r.git')
const keyBody = randomBytes(60).toString('base64')
const privateKey = `-----BEGIN OPENSSH PRIVATE KEY-----\r\n${keyBody}\r\n-----END OPENSSH PRIVATE KEY-----`

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  )

/** Runs a session and hands back what it saw, for assertions after the dir is gone. */
const capture = async (remote = https, cred?: GitCredential, owner = {}) => {
  let seen: GitSession | undefined
  await withGitSession(remote, cred, owner, 4500, async (s) => {
    seen = s
  })
  if (!seen) throw new Error('the session never ran')
  return seen
}

t.test('the environment is minimal and complete: nothing of the agent leaks in', async (t) => {
  process.env.AGENT_ONLY_SECRET = 'agent-secret-value'
  process.env.https_proxy = 'http://proxy.internal:3128'
  t.teardown(() => {
    delete process.env.AGENT_ONLY_SECRET
    delete process.env.https_proxy
  })
  const s = await capture()
  t.same(Object.keys(s.env).sort(), [
    'GIT_ASKPASS',
    'GIT_CONFIG_NOSYSTEM',
    'GIT_HTTP_LOW_SPEED_LIMIT',
    'GIT_HTTP_LOW_SPEED_TIME',
    'GIT_TERMINAL_PROMPT',
    'HOME',
    'LANG',
    'LC_ALL',
    'PATH',
    'https_proxy',
  ])
  t.equal(s.env.HOME, s.home)
  t.equal(s.env.GIT_TERMINAL_PROMPT, '0')
  t.equal(s.env.GIT_HTTP_LOW_SPEED_TIME, '5', 'the git timeout, rounded up to seconds')
  t.equal(s.env.https_proxy, 'http://proxy.internal:3128')
  t.equal(await exists(s.home), false, 'the session dir is removed')
})

t.test('a token travels as an Authorization header scoped to the origin, in env only', async (t) => {
  const s = await capture(https, { kind: 'token', username: 'x-access-token', token })
  const basic = Buffer.from(`x-access-token:${token}`).toString('base64')
  t.equal(s.env.GIT_CONFIG_COUNT, '1')
  t.equal(s.env.GIT_CONFIG_KEY_0, 'http.https://git.example.com/.extraHeader')
  t.equal(s.env.GIT_CONFIG_VALUE_0, `Authorization: Basic ${basic}`)
  const elsewhere = Object.entries(s.env).filter(([k, v]) => k !== 'GIT_CONFIG_VALUE_0' && (v.includes(token) || v.includes(basic)))
  t.same(elsewhere, [], 'in no other variable')
  t.equal(s.scrub(`fatal: ${token} / ${basic}`), 'fatal: [REDACTED] / [REDACTED]')
})

t.test('an ssh key goes to a private temp file named by GIT_SSH_COMMAND, gone afterwards', async (t) => {
  let keyFile = ''
  let home = ''
  let command = ''
  await withGitSession(ssh, { kind: 'ssh', privateKey }, {}, 2000, async (s) => {
    home = s.home
    command = s.env.GIT_SSH_COMMAND ?? ''
    keyFile = join(s.home, 'deploy_key')
    t.equal((await stat(s.home)).mode & 0o777, 0o700, 'session dir 0700')
    t.equal((await stat(keyFile)).mode & 0o777, 0o600, 'key 0600')
    t.equal(await readFile(keyFile, 'utf8'), privateKey.replaceAll('\r\n', '\n') + '\n', 'LF endings, final newline')
    t.equal(await readFile(join(s.home, 'known_hosts'), 'utf8'), '')
    t.match(s.scrub(`oops ${keyBody}`), 'oops [REDACTED]')
  })
  t.match(command, `-i '${keyFile}'`)
  t.match(command, 'IdentitiesOnly=yes')
  t.match(command, 'BatchMode=yes')
  t.match(command, 'ConnectTimeout=2')
  t.match(command, 'StrictHostKeyChecking=accept-new')
  t.match(command, `UserKnownHostsFile='${join(home, 'known_hosts')}'`)
  t.notMatch(command, keyBody, 'the key itself is not in the command')
  t.equal(await exists(home), false, 'key dir removed')
})

t.test('pinned host keys make host key checking strict', async (t) => {
  const knownHosts = 'git.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n'
  await withGitSession(ssh, { kind: 'ssh', privateKey, knownHosts }, {}, 2000, async (s) => {
    t.match(s.env.GIT_SSH_COMMAND, 'StrictHostKeyChecking=yes')
    t.equal(await readFile(join(s.home, 'known_hosts'), 'utf8'), knownHosts)
  })
})

t.test('the session dir is removed when the work throws', async (t) => {
  let home = ''
  const e = await rejected(() =>
    withGitSession(ssh, { kind: 'ssh', privateKey }, {}, 1000, async (s) => {
      home = s.home
      throw new Error('git failed')
    }),
  )
  t.match(e, { message: 'git failed' })
  t.equal(await exists(home), false)
})

t.test('credential and URL must agree; plain http to a remote host gets no token', async (t) => {
  const cases: [ReturnType<typeof parseRemote>, GitCredential, string][] = [
    [ssh, { kind: 'token', username: 'u', token }, 'GIT_CREDENTIAL_MISMATCH'],
    [parseRemote('file:///srv/r.git'), { kind: 'token', username: 'u', token }, 'GIT_CREDENTIAL_MISMATCH'],
    [https, { kind: 'ssh', privateKey }, 'GIT_CREDENTIAL_MISMATCH'],
    [parseRemote('http://git.example.com/r.git'), { kind: 'token', username: 'u', token }, 'GIT_INSECURE_TRANSPORT'],
  ]
  for (const [remote, cred, code] of cases) {
    const e = await rejected(() => withGitSession(remote, cred, {}, 1000, async () => {}))
    if (!isAgentError(e)) throw e
    t.equal(e.code, code, remote.url)
    t.equal(e.exitCode, 2)
    t.notMatch(e.message, token)
  }
})

t.test('for a service user, the key belongs to that user; the session dir stays root\'s (0711: it reaches its files, adds none)', { skip: process.getuid?.() !== 0 && 'chown needs root' }, async (t) => {
  const owner = { uid: 65534, gid: 65534 }
  await withGitSession(ssh, { kind: 'ssh', privateKey }, owner, 1000, async (s) => {
    for (const p of [join(s.home, 'deploy_key'), join(s.home, 'known_hosts')]) {
      const st = await stat(p)
      t.same([st.uid, st.gid, st.mode & 0o777], [65534, 65534, 0o600], p)
    }
    const dir = await stat(s.home)
    t.same([dir.uid, dir.mode & 0o7777], [0, 0o711], s.home)
  })
})
