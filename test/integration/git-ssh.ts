/**
 * The Git seam against a real OpenSSH server: a deploy key (the `ssh` credential) authenticates
 * to sshd on loopback whose git account can only run git-shell, and the server's host key is
 * pinned by known_hosts or trusted on first use. The leak tests look for each line of the
 * private key in every process's argv during a clone, in the clone and in the agent's temp dirs.
 */
import { execFileSync } from 'node:child_process'
import { lstat, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { isAgentError, type AgentError } from '../../agent/src/core/errors.js'
import { createGit, type GitCredential, type GitOptions } from '../../agent/src/git/client.js'
import { createFixtureRepo } from '../helpers/fixture-repo.js'
import { findLeaks } from '../helpers/leak-scan.js'
import { sandboxDir } from '../helpers/sandbox.js'
import { generateSshKey, startSshGitServer } from '../helpers/ssh-git-server.js'
import { rejected } from '../helpers/thrown.js'
import { sampleCmdlines } from '../helpers/proc-sampler.js'

if (process.getuid?.() !== 0) throw new Error('git-ssh.ts runs sshd and clones as another user: it needs root')

// traversable: the git account reads the repos, the service user reaches its clone target
const work = sandboxDir('git-ssh-it')
t.teardown(() => rm(work, { recursive: true, force: true }))

const repoRoot = join(work, 'repos')
const repo = await createFixtureRepo({
  root: repoRoot,
  name: 'app',
  branches: {
    test: { 'branch.txt': 'test\n' },
    stage: { 'branch.txt': 'stage\n', 'package.json': '{"name":"app"}\n' },
    main: { 'branch.txt': 'main\n' },
  },
})
// a second commit on stage, so "shallow" is observable
await repo.commit('stage', { 'later.txt': 'second commit\n' })

const server = await startSshGitServer({ repoRoot })
t.teardown(() => server.stop())
const url = server.url(repo.bareDir)
const { privateKey } = server.clientKey
const cred: GitCredential = { kind: 'ssh', privateKey, knownHosts: server.knownHosts }

/**
 * The secret lines of a key: those another ed25519 key does not share (the first line of every
 * unencrypted ed25519 key is the same format header, and it is in the server's host key too).
 */
const otherKey = generateSshKey()
const secretLines = (key: string) =>
  key
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length >= 16 && !l.startsWith('-----') && !otherKey.privateKey.includes(l))
const keyNeedles = [privateKey.trim(), ...secretLines(privateKey)]
// an ed25519 key has 7 lines of base64; the first (format header) is no secret
if (keyNeedles.length < 4) throw new Error(`too few secret lines in the deploy key to search for: ${keyNeedles.length - 1}`)

const serviceUser = 'bootstrap-app'
const ensureServiceUser = () => {
  try {
    execFileSync('id', ['-u', serviceUser], { stdio: 'ignore' })
  } catch {
    // the agent's own useradd (core/service-user.ts); exit 9: created meanwhile by another test
    try {
      execFileSync('useradd', ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', serviceUser], { stdio: 'pipe' })
    } catch (e: unknown) {
      if (!(e instanceof Error && 'status' in e && e.status === 9)) throw e
    }
  }
  const id = (flag: string) => Number(execFileSync('id', [flag, serviceUser], { encoding: 'utf8' }))
  return { uid: id('-u'), gid: id('-g') }
}

let n = 0
const freshDir = () => join(work, `clone-${++n}`)
const fast: GitOptions = { timeoutMs: 10_000, attempts: 3, backoff: { minMs: 10, maxMs: 50 } }

const rejection = async (p: Promise<unknown>): Promise<AgentError> => {
  const e = await rejected(() => p)
  if (!isAgentError(e)) throw e
  return e
}

const git = (cwd: string, ...args: string[]) =>
  execFileSync('git', args, { cwd, encoding: 'utf8', env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_DIR: join(cwd, '.git') } }).trim()

/** sshd log lines from `since` (a log length) on that match `re` */
const logLines = (since: number, re: RegExp) =>
  server
    .log()
    .slice(since)
    .split('\n')
    .filter((l) => re.test(l))

/** The agent's session dirs (git/auth.ts) in os.tmpdir(); other test files make them too. */
const sessionDirs = async (): Promise<string[]> =>
  (await readdir(tmpdir())).filter((f) => f.startsWith('bootstrap-git-')).map((f) => join(tmpdir(), f))

/** findLeaks over the session dirs that still exist; one may vanish while it is walked. */
const leaksInSessionDirs = async (needles: string[]) => {
  const found: string[] = []
  for (const d of await sessionDirs()) {
    try {
      found.push(...findLeaks(needles, { root: d, allow: [] }))
    } catch (e: unknown) {
      if (!(e instanceof Error && 'code' in e && e.code === 'ENOENT')) throw e
    }
  }
  return found
}


t.test('headOf answers the SHA of each branch over ssh with the pinned host key', async (t) => {
  const since = server.log().length
  const g = createGit(fast)
  for (const branch of ['test', 'stage', 'main']) {
    t.equal(await g.headOf(url, branch, cred), await repo.head(branch), branch)
  }
  t.equal(await g.headOf(url, 'nope', cred), undefined, 'a missing branch is undefined')
  t.ok(logLines(since, /Accepted publickey for bootstrap-git from 127\.0\.0\.1/).length >= 4, 'sshd accepted the deploy key')
})

t.test('cloneBranch as the service user: stage content, owned by that user, no key anywhere', async (t) => {
  const { uid, gid } = ensureServiceUser()
  const dir = join(freshDir(), 'releases', 'r1')
  const retries: unknown[] = []
  const sampler = sampleCmdlines()
  await sampler.ready
  let result
  try {
    result = await createGit({ ...fast, onRetry: (i) => retries.push(i) }).cloneBranch(url, 'stage', { dir, uid, gid }, cred)
  } finally {
    const argvs = await sampler.stop()
    t.same(findLeaks(keyNeedles, { root: work, allow: [], cmdlines: argvs }), [], 'no line of the key in any argv or sandbox file')
    // other processes on the box may run ssh too: look for ours, by the key file and the port
    t.ok(argvs.some((a) => a.includes('deploy_key') && a.includes(`-p ${server.port}`)), 'the sampler saw our ssh')
  }
  t.same(result, { commit: await repo.head('stage') })
  t.same(retries, [])
  t.equal(await readFile(join(dir, 'branch.txt'), 'utf8'), 'stage\n')
  t.equal(await readFile(join(dir, 'later.txt'), 'utf8'), 'second commit\n')
  t.equal(git(dir, 'rev-list', '--count', 'HEAD'), '1', 'shallow')
  t.equal(git(dir, 'config', '--get', 'remote.origin.url'), url, 'remote url as given')
  t.notMatch(await readFile(join(dir, '.git/config'), 'utf8'), /sshCommand|deploy_key|bootstrap-git-/, 'no ssh command or key path in .git/config')
  const owners = new Set<string>()
  for (const rel of ['.', ...(await readdir(dir, { recursive: true }))]) {
    const st = await lstat(join(dir, rel))
    owners.add(`${st.uid}:${st.gid}`)
  }
  t.same([...owners], [`${uid}:${gid}`], 'every file belongs to the service user')
  t.same(findLeaks(keyNeedles, { root: dir, allow: [] }), [], 'no file of the clone holds the key')
  t.same(await leaksInSessionDirs(keyNeedles), [], 'no bootstrap-git-* dir in tmpdir holds the key')
  t.equal(await createGit(fast).headCommit(dir), result?.commit, 'headCommit reads the clone')
})

t.test('a wrong key fails at once with GIT_AUTH_FAILED, one connection, without the key', async (t) => {
  const wrong = generateSshKey('wrong-key')
  const retries: unknown[] = []
  const g = createGit({ ...fast, onRetry: (i) => retries.push(i) })
  const dir = freshDir()
  const since = server.log().length
  const started = Date.now()
  const e = await rejection(g.cloneBranch(url, 'stage', { dir }, { kind: 'ssh', privateKey: wrong.privateKey, knownHosts: server.knownHosts }))
  t.comment(`wrong key rejected in ${Date.now() - started} ms`)
  t.equal(e.code, 'GIT_AUTH_FAILED')
  t.equal(e.retryable, false)
  t.match(e.message, url)
  t.match(e.message, /Permission denied \(publickey\)/)
  const said = `${e.message} ${e.remedy} ${e.stack}`
  for (const line of [wrong.privateKey.trim(), ...secretLines(wrong.privateKey), ...keyNeedles]) t.notOk(said.includes(line), 'no key line in the error')
  t.same(retries, [], 'not retried')
  t.equal(logLines(since, /Connection from 127\.0\.0\.1/).length, 1, 'sshd saw one connection: no retry')
  t.equal(logLines(since, /Accepted publickey/).length, 0)
  t.equal((await lstat(dir).catch(() => undefined)) === undefined, true, 'no partial clone left')
  const h = await rejection(g.headOf(url, 'stage', { kind: 'ssh', privateKey: wrong.privateKey }))
  t.equal(h.code, 'GIT_AUTH_FAILED', 'headOf too, with trust on first use')
  t.same(await leaksInSessionDirs([wrong.privateKey.trim(), ...secretLines(wrong.privateKey)]), [])
})

t.test('a known_hosts that does not match the server is GIT_HOST_KEY_REJECTED, before any key is offered', async (t) => {
  const impostor = generateSshKey('impostor-host').publicKey.split(' ').slice(0, 2).join(' ')
  const g = createGit(fast)
  const cases = {
    'another key for this host': `[127.0.0.1]:${server.port} ${impostor}`,
    'a key for another host only': `[127.0.0.1]:1 ${server.knownHosts.split(' ').slice(1).join(' ')}`,
  }
  for (const [name, knownHosts] of Object.entries(cases)) {
    const since = server.log().length
    const dir = freshDir()
    const e = await rejection(g.cloneBranch(url, 'stage', { dir }, { kind: 'ssh', privateKey, knownHosts }))
    t.equal(e.code, 'GIT_HOST_KEY_REJECTED', name)
    t.equal(e.retryable, false, name)
    t.match(e.message, url, name)
    const said = `${e.message} ${e.remedy} ${e.stack}`
    t.notOk(keyNeedles.some((l) => said.includes(l)), `${name}: no key line in the error`)
    t.equal(logLines(since, /Connection from 127\.0\.0\.1/).length, 1, `${name}: ssh reached the server once`)
    t.equal(logLines(since, /publickey/).length, 0, `${name}: the key was never offered to the impostor`)
    t.equal((await lstat(dir).catch(() => undefined)) === undefined, true, `${name}: no partial clone left`)
  }
})

t.test('without knownHosts, StrictHostKeyChecking=accept-new trusts the server on first use', async (t) => {
  const g = createGit(fast)
  const tofu: GitCredential = { kind: 'ssh', privateKey }
  t.equal(await g.headOf(url, 'main', tofu), await repo.head('main'))
  const dir = freshDir()
  t.same(await g.cloneBranch(url, 'test', { dir }, tofu), { commit: await repo.head('test') })
  t.equal(await readFile(join(dir, 'branch.txt'), 'utf8'), 'test\n')
  // a key as secrets stores hand it back: CRLF line ends, no final newline
  const mangled: GitCredential = { kind: 'ssh', privateKey: privateKey.trim().replaceAll('\n', '\r\n'), knownHosts: server.knownHosts }
  t.equal(await g.headOf(url, 'main', mangled), await repo.head('main'), 'a CRLF key without its final newline works')
})
