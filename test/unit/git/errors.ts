import t from 'tap'
import { branchNotFound, classifyGitFailure, repoEmpty } from '../../../agent/src/git/errors.js'

const url = 'https://github.com/o/r.git'

// stderr as git 2.39 prints it with LANG=C
const cases: [string, string, string, boolean][] = [
  ['wrong token', "remote: Invalid username or password.\nfatal: Authentication failed for 'https://github.com/o/r.git/'", 'GIT_AUTH_FAILED', false],
  ['no credential', "fatal: could not read Username for 'https://github.com': terminal prompts disabled", 'GIT_AUTH_FAILED', false],
  ['HTTP 403', "fatal: unable to access 'https://github.com/o/r.git/': The requested URL returned error: 403", 'GIT_AUTH_FAILED', false],
  ['ssh key refused', 'git@github.com: Permission denied (publickey).\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\nand the repository exists.', 'GIT_AUTH_FAILED', false],
  ['host key', 'Host key verification failed.\nfatal: Could not read from remote repository.', 'GIT_HOST_KEY_REJECTED', false],
  ['github repo missing', "remote: Repository not found.\nfatal: repository 'https://github.com/o/r.git/' not found", 'GIT_REPO_NOT_FOUND', false],
  ['local repo missing', "fatal: '/srv/r.git' does not appear to be a git repository\nfatal: Could not read from remote repository.", 'GIT_REPO_NOT_FOUND', false],
  ['HTTP 404', "fatal: unable to access 'https://h/r.git/': The requested URL returned error: 404", 'GIT_REPO_NOT_FOUND', false],
  ['branch missing', 'warning: Could not find remote branch nope to clone.\nfatal: Remote branch nope not found in upstream origin', 'GIT_BRANCH_NOT_FOUND', false],
  ['dns', "fatal: unable to access 'https://github.com/o/r.git/': Could not resolve host: github.com", 'GIT_UNREACHABLE', true],
  ['refused', "fatal: unable to access 'http://127.0.0.1:1/r.git/': Failed to connect to 127.0.0.1 port 1 after 0 ms: Couldn't connect to server", 'GIT_UNREACHABLE', true],
  ['HTTP 502', 'error: RPC failed; HTTP 502 curl 22 The requested URL returned error: 502\nfatal: expected flush after ref listing', 'GIT_UNREACHABLE', true],
  ['reset', "fatal: unable to access 'https://github.com/o/r.git/': Recv failure: Connection reset by peer", 'GIT_UNREACHABLE', true],
  ['hung up', 'fatal: the remote end hung up unexpectedly\nfatal: early EOF', 'GIT_UNREACHABLE', true],
  ['ssh refused', 'ssh: connect to host 127.0.0.1 port 22: Connection refused\nfatal: Could not read from remote repository.', 'GIT_UNREACHABLE', true],
  ['stalled', "fatal: unable to access 'https://github.com/o/r.git/': Operation too slow. Less than 1 bytes/sec transferred the last 5 seconds", 'GIT_TIMEOUT', true],
  ['ssh timeout', 'ssh: connect to host github.com port 22: Connection timed out', 'GIT_TIMEOUT', true],
  ['unknown', 'fatal: something nobody has seen before', 'GIT_FAILED', false],
]

t.test('git stderr -> code and retry policy', async (t) => {
  for (const [name, detail, code, retryable] of cases) {
    const e = classifyGitFailure({ url, branch: 'stage', detail }, 5000)
    t.equal(e.code, code, name)
    t.equal(e.retryable, retryable, `${name}: retryable`)
    t.ok(e.remedy.length > 0, `${name}: has a remedy`)
    t.match(e.message, url, `${name}: names the URL`)
  }
})

t.test('a missing branch is bad input (exit 2) naming branch and URL', async (t) => {
  const e = classifyGitFailure({ url, branch: 'nope', detail: 'fatal: Remote branch nope not found in upstream origin' }, 1)
  t.equal(e.exitCode, 2)
  t.equal(e.message, `branch "nope" does not exist in "${url}"`)
})

t.test('messages keep git\'s verdict lines, not its advice', async (t) => {
  const e = classifyGitFailure({ url, detail: cases[3]?.[1] ?? '' }, 1)
  t.equal(
    e.message,
    `git could not authenticate to "${url}": git@github.com: Permission denied (publickey). | fatal: Could not read from remote repository.`,
  )
  const plain = classifyGitFailure({ url, detail: 'something\nodd' }, 1)
  t.equal(plain.message, `git failed for "${url}": something | odd`)
  t.equal(classifyGitFailure({ url, detail: '' }, 1).message, `git failed for "${url}"`)
  t.match(classifyGitFailure({ url, branch: 'b', detail: 'Connection refused' }, 1).message, `branch "b" of "${url}"`)
})

t.test('the timeout names the deadline', async (t) => {
  const e = classifyGitFailure({ url, branch: 'main', detail: 'Operation too slow' }, 1500)
  t.equal(e.message, `git gave no answer for branch "main" of "${url}" within 1500 ms`)
})

t.test('a missing branch names where its name came from and the branches there are', async (t) => {
  const e = branchNotFound(url, 'main', { origin: 'environment "prod" in the branch map', fix: 'fix the map', branches: ['stage', 'test'] })
  t.equal(e.exitCode, 2)
  t.equal(e.code, 'GIT_BRANCH_NOT_FOUND')
  t.equal(e.message, `branch "main" (from environment "prod" in the branch map) does not exist in "${url}"; its branches are "stage", "test"`)
  t.equal(e.remedy, 'push the branch, or fix the map')
  const many = branchNotFound(url, 'x', { branches: Array.from({ length: 13 }, (_, i) => `b${i}`) })
  t.match(many.message, /"b9" and 3 more$/, 'a long list is cut short')
  t.notMatch(many.message, /b10/)
})

t.test('an empty repository is bad input (exit 2) naming the URL and the branch expected', async (t) => {
  const e = repoEmpty(url, 'stage')
  t.equal(e.exitCode, 2)
  t.equal(e.code, 'GIT_REPO_EMPTY')
  t.match(e.message, `"${url}" is empty`)
  t.match(e.message, 'expected branch "stage"')
  t.match(e.remedy, /push the application to branch "stage"/)
})

t.test('a repository that is not there is bad input (exit 2): a retry cannot find it', async (t) => {
  const e = classifyGitFailure({ url, branch: 'stage', detail: "fatal: repository 'https://github.com/o/r.git/' not found" }, 1)
  t.equal(e.code, 'GIT_REPO_NOT_FOUND')
  t.equal(e.exitCode, 2)
  t.match(e.remedy, /check the repository URL/)
  const auth = classifyGitFailure({ url, detail: "fatal: Authentication failed for 'https://github.com/o/r.git/'" }, 1)
  t.equal(auth.exitCode, 1, 'a refused credential stays an operational failure')
})
