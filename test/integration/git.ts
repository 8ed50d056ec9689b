/**
 * The Git seam against real git: a private repository served over smart HTTP with basic auth
 * (git http-backend), plus file:// and an unreachable ssh host. The leak tests search for the
 * token itself in every process's argv during a clone and in every file of the clone.
 */
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { lstat, mkdir, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { isAgentError, type AgentError } from '../../agent/src/core/errors.js'
import { withGitSession } from '../../agent/src/git/auth.js'
import { createGit, type GitCredential, type GitOptions } from '../../agent/src/git/client.js'
import { createFixtureRepo } from '../helpers/fixture-repo.js'
import { startGitHttpServer } from '../helpers/git-http-server.js'
import { findLeaks } from '../helpers/leak-scan.js'
import { freePort, sandboxDir } from '../helpers/sandbox.js'
import { rejected } from '../helpers/thrown.js'
import { sampleCmdlines } from '../helpers/proc-sampler.js'

const token = `tok-${randomBytes(16).toString('hex')}`
const username = 'x-access-token'
const cred: GitCredential = { kind: 'token', username, token }
const leakNeedles = [token, Buffer.from(`${username}:${token}`).toString('base64')]

// traversable: the uid test's service user must reach its clone target
const work = sandboxDir('git-it')
t.teardown(() => rm(work, { recursive: true, force: true }))

const projectRoot = join(work, 'repos')
const repo = await createFixtureRepo({
  root: projectRoot,
  name: 'app',
  branches: {
    test: { 'branch.txt': 'test\n' },
    stage: { 'branch.txt': 'stage\n', 'package.json': '{"name":"app"}\n' },
    main: { 'branch.txt': 'main\n' },
  },
})
// a second commit on stage, so "shallow" is observable
await repo.commit('stage', { 'later.txt': 'second commit\n' })

const server = await startGitHttpServer({ projectRoot, username, password: token })
t.teardown(() => server.stop())
const url = server.url('app.git')

let n = 0
const freshDir = () => join(work, `clone-${++n}`)
const fast: GitOptions = { timeoutMs: 10_000, attempts: 3, backoff: { minMs: 10, maxMs: 50 } }

const rejection = async (p: Promise<unknown>): Promise<AgentError> => {
  const e = await rejected(() => p)
  if (!isAgentError(e)) throw e
  return e
}

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  )

const git = (cwd: string, ...args: string[]) =>
  execFileSync('git', args, { cwd, encoding: 'utf8', env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1' } }).trim()


t.test('headOf answers the SHA of each branch, undefined for a missing one', async (t) => {
  const g = createGit(fast)
  for (const branch of ['test', 'stage', 'main']) {
    t.equal(await g.headOf(url, branch, cred), await repo.head(branch), branch)
  }
  t.equal(await g.headOf(url, 'nope', cred), undefined)
})

t.test('cloneBranch clones one commit of the branch, and leaves no credential behind', async (t) => {
  const dir = freshDir()
  const sampler = sampleCmdlines()
  await sampler.ready
  const retries: unknown[] = []
  let result
  try {
    result = await createGit({ ...fast, onRetry: (i) => retries.push(i) }).cloneBranch(url, 'stage', { dir }, cred)
  } finally {
    const argvs = await sampler.stop()
    t.same(findLeaks(leakNeedles, { root: work, allow: [], cmdlines: argvs }), [], 'the token is in no argv')
    // other processes on the box may run git too: look for ours, by the server's port
    t.ok(argvs.some((a) => a.includes('remote-http') && a.includes(url)), 'the sampler saw our git')
  }
  t.same(result, { commit: await repo.head('stage') })
  t.equal(await readFile(join(dir, 'branch.txt'), 'utf8'), 'stage\n')
  t.equal(await readFile(join(dir, 'later.txt'), 'utf8'), 'second commit\n')
  t.equal(git(dir, 'rev-list', '--count', 'HEAD'), '1', 'shallow')
  t.equal(git(dir, 'config', '--get', 'remote.origin.url'), url, 'remote url is credential-free')
  t.equal(git(dir, 'tag', '--list'), '', 'no tags')
  t.same(findLeaks(leakNeedles, { root: dir, allow: [] }), [], 'no file of the clone holds the token')
  t.ok(server.requests.some((r) => r.authorized), 'the server saw authorized requests')
  t.same(retries, [])
  t.equal(await createGit(fast).headCommit(dir), result?.commit, 'headCommit reads the clone')
})

t.test('a wrong token fails at once with GIT_AUTH_FAILED and without the token', async (t) => {
  const wrong = `wrong-${randomBytes(8).toString('hex')}`
  const retries: unknown[] = []
  const g = createGit({ ...fast, onRetry: (i) => retries.push(i) })
  const dir = freshDir()
  const before = server.requests.length
  const e = await rejection(g.cloneBranch(url, 'stage', { dir }, { kind: 'token', username, token: wrong }))
  t.equal(e.code, 'GIT_AUTH_FAILED')
  t.equal(e.retryable, false)
  t.match(e.message, url)
  t.notMatch(`${e.message} ${e.remedy} ${e.stack}`, wrong)
  t.same(retries, [], 'not retried')
  t.ok(server.requests.slice(before).every((r) => !r.authorized))
  t.equal(await exists(dir), false, 'no partial clone left')
  const h = await rejection(g.headOf(url, 'stage', { kind: 'token', username, token: wrong }))
  t.equal(h.code, 'GIT_AUTH_FAILED')
  t.notMatch(h.message, wrong)
})

t.test('no credential for a private repo is an auth failure, not a prompt', async (t) => {
  const e = await rejection(createGit(fast).headOf(url, 'stage'))
  t.equal(e.code, 'GIT_AUTH_FAILED')
})

t.test('a missing branch is GIT_BRANCH_NOT_FOUND (bad input, exit 2)', async (t) => {
  const dir = freshDir()
  const e = await rejection(createGit(fast).cloneBranch(url, 'no-such-branch', { dir }, cred))
  t.equal(e.code, 'GIT_BRANCH_NOT_FOUND')
  t.equal(e.exitCode, 2)
  t.match(e.message, 'no-such-branch')
  t.match(e.message, url)
  t.equal(await exists(dir), false)
})

t.test('a missing repository is GIT_REPO_NOT_FOUND', async (t) => {
  const e = await rejection(createGit(fast).headOf(server.url('missing.git'), 'main', cred))
  t.equal(e.code, 'GIT_REPO_NOT_FOUND')
  t.equal(e.retryable, false)
})

t.test('a URL carrying userinfo is refused without echoing it', async (t) => {
  const withUserinfo = url.replace('http://', `http://${username}:${token}@`)
  const g = createGit(fast)
  for (const e of [
    await rejection(g.headOf(withUserinfo, 'main')),
    await rejection(g.cloneBranch(withUserinfo, 'main', { dir: freshDir() })),
    await rejection(g.headOf(url.replace('http://', `http://${token}@`), 'main')),
  ]) {
    t.equal(e.code, 'GIT_URL_INVALID')
    t.equal(e.exitCode, 2)
    t.notMatch(e.message, token)
    t.match(e.remedy, /credential secret/)
  }
})

t.test('a non-empty target is refused and left alone', async (t) => {
  const dir = freshDir()
  await mkdir(dir)
  await writeFile(join(dir, 'keep.txt'), 'mine')
  const e = await rejection(createGit(fast).cloneBranch(url, 'stage', { dir }, cred))
  t.equal(e.code, 'GIT_TARGET_NOT_EMPTY')
  t.equal(await readFile(join(dir, 'keep.txt'), 'utf8'), 'mine')
})

t.test('a uid without a gid is refused; headCommit of a missing dir is GIT_NOT_A_CLONE', async (t) => {
  const g = createGit(fast)
  const e = await rejection(g.cloneBranch(url, 'stage', { dir: freshDir(), uid: 65534 }, cred))
  t.equal(e.code, 'GIT_TARGET_INVALID')
  t.equal((await rejection(g.headCommit(freshDir()))).code, 'GIT_NOT_A_CLONE')
})

t.test('a stalled server times out on every attempt, then GIT_TIMEOUT', async (t) => {
  const stalled = await startGitHttpServer({ projectRoot, username, password: token, stallMs: 60_000 })
  t.teardown(() => stalled.stop())
  const retries: { attempt: number; error: string }[] = []
  const g = createGit({ timeoutMs: 500, attempts: 2, backoff: { minMs: 10, maxMs: 20 }, onRetry: (i) => retries.push(i) })
  const dir = freshDir()
  const e = await rejection(g.cloneBranch(stalled.url('app.git'), 'stage', { dir }, cred))
  t.equal(e.code, 'GIT_TIMEOUT')
  t.equal(e.retryable, true)
  t.equal(retries.length, 1, 'one retry for two attempts')
  t.equal(retries[0]?.attempt, 1)
  t.equal(stalled.requests.length, 2, 'one request per attempt')
  t.equal(await exists(dir), false, 'partial clone removed')
})

t.test('a refused connection is GIT_UNREACHABLE and retried', async (t) => {
  const port = await freePort() // nobody listens there any more
  const retries: unknown[] = []
  const g = createGit({ ...fast, attempts: 2, onRetry: (i) => retries.push(i) })
  const e = await rejection(g.headOf(`http://127.0.0.1:${port}/app.git`, 'main', cred))
  t.equal(e.code, 'GIT_UNREACHABLE')
  t.equal(e.retryable, true)
  t.equal(retries.length, 1)
})

t.test('file:// URLs need no credential', async (t) => {
  const g = createGit(fast)
  t.equal(await g.headOf(repo.fileUrl, 'main'), await repo.head('main'))
  const dir = freshDir()
  t.same(await g.cloneBranch(repo.fileUrl, 'test', { dir }), { commit: await repo.head('test') })
  t.equal(await readFile(join(dir, 'branch.txt'), 'utf8'), 'test\n')
  t.equal(git(dir, 'rev-list', '--count', 'HEAD'), '1', 'shallow over file:// too')
})

t.test('an ssh deploy key reaches ssh through a temp file that is gone afterwards', async (t) => {
  const port = await freePort() // nobody listens there any more
  const privateKey = `-----BEGIN OPENSSH PRIVATE KEY-----\n${randomBytes(48).toString('base64')}\n-----END OPENSSH PRIVATE KEY-----`
  const before = await sessionDirs()
  const e = await rejection(
    createGit({ ...fast, attempts: 1 }).headOf(`ssh://git@127.0.0.1:${port}/app.git`, 'main', { kind: 'ssh', privateKey }),
  )
  t.equal(e.code, 'GIT_UNREACHABLE', 'ssh itself ran (and found nobody listening)')
  t.same(await sessionDirs(), before, 'the key dir is removed')
})

t.test('clone as an unprivileged user: every file is owned by that user', { skip: process.getuid?.() !== 0 && 'needs root' }, async (t) => {
  const user = 'bootstrap-test-git'
  try {
    execFileSync('id', ['-u', user], { stdio: 'ignore' })
  } catch {
    execFileSync('useradd', ['--system', '--no-create-home', user])
  }
  const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }))
  const gid = Number(execFileSync('id', ['-g', user], { encoding: 'utf8' }))
  const dir = join(freshDir(), 'releases', 'r1')
  const g = createGit(fast)
  const { commit } = await g.cloneBranch(url, 'main', { dir, uid, gid }, cred)
  t.equal(commit, await repo.head('main'))
  const owners = new Set<string>()
  for (const rel of ['.', ...(await readdir(dir, { recursive: true }))]) {
    const st = await lstat(join(dir, rel))
    owners.add(`${st.uid}:${st.gid}`)
  }
  t.same([...owners], [`${uid}:${gid}`])
  t.equal(await g.headCommit(dir), commit, 'headCommit runs as the owner, so git trusts the repo')
  t.same(findLeaks(leakNeedles, { root: dir, allow: [] }), [])
})

t.test('a clone target swapped for a link (its parent is the service user\'s): refused, the link\'s target keeps its owner', { skip: process.getuid?.() !== 0 && 'needs root' }, async (t) => {
  const uid = Number(execFileSync('id', ['-u', 'bootstrap-test-git'], { encoding: 'utf8' }))
  const gid = Number(execFileSync('id', ['-g', 'bootstrap-test-git'], { encoding: 'utf8' }))
  const base = freshDir()
  const rootOwned = join(base, 'root-owned')
  await mkdir(rootOwned, { recursive: true, mode: 0o755 })
  await mkdir(join(base, 'releases'))
  await symlink(rootOwned, join(base, 'releases', 'r1'))
  const e = await rejection(createGit(fast).cloneBranch(url, 'main', { dir: join(base, 'releases', 'r1'), uid, gid }, cred))
  t.equal(e.code, 'GIT_TARGET_INVALID')
  const st = await stat(rootOwned)
  t.same([st.uid, st.gid, st.mode & 0o7777], [0, 0, 0o755], 'never chowned to the service user through the link')
  t.same(await readdir(rootOwned), [], 'nothing cloned into it')
})

t.test('the session dir stays root\'s: git as another user reaches its files, adds none', { skip: process.getuid?.() !== 0 && 'needs root' }, async (t) => {
  const uid = Number(execFileSync('id', ['-u', 'bootstrap-test-git'], { encoding: 'utf8' }))
  const gid = Number(execFileSync('id', ['-g', 'bootstrap-test-git'], { encoding: 'utf8' }))
  const seen = await withGitSession(undefined, undefined, { uid, gid }, 1000, async s => {
    const st = await stat(s.home)
    return { uid: st.uid, mode: st.mode & 0o7777 }
  })
  t.same(seen, { uid: 0, mode: 0o711 })
})

async function sessionDirs(): Promise<string[]> {
  return (await readdir(tmpdir())).filter((f) => f.startsWith('bootstrap-git-')).sort()
}
