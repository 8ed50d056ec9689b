/**
 * ssm/rebootstrap.json, tested like code: its shape, its parameter guards against hostile values,
 * shellcheck on its script, and end-to-end re-bootstraps on this machine. SSM substitutes
 * `{{ parameter }}` textually into the script before any shell reads it and runs the result as
 * `sh _script.sh`; this test does exactly that, with `bootstrap-agent` on PATH being a wrapper
 * that runs dist/bin.js in local mode (BOOTSTRAP_LOCAL=1) against a sandbox root.
 */
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { SSM_BRANCH_PATTERN } from '../../agent/src/commands/rollout.js'
import { parseResultLine } from '../../agent/src/operator/rollout.js'
import { createFixtureRepo } from '../helpers/fixture-repo.js'
import { appFiles, BIN, freePort, getJson, removeSandbox, REPO, sandboxDir, writeSecrets } from '../helpers/sandbox.js'

interface DocParameter { type: string; default?: string; allowedPattern?: string; allowedValues?: string[]; maxChars?: number }
interface Doc {
  schemaVersion: string
  parameters: Record<string, DocParameter>
  mainSteps: { action: string; name: string; precondition?: unknown; inputs: { timeoutSeconds?: string; runCommand: string[] } }[]
}
const doc = JSON.parse(readFileSync(join(REPO, 'ssm/rebootstrap.json'), 'utf8')) as Doc
const step = doc.mainSteps[0]
const PLACEHOLDER = /\{\{\s*(\w+)\s*\}\}/g

/** SSM's parameter validation: allowedValues, allowedPattern, maxChars. */
const accepts = (name: string, value: string): boolean => {
  const p = doc.parameters[name]
  if (!p) return false
  if (p.allowedValues && !p.allowedValues.includes(value)) return false
  if (p.allowedPattern !== undefined && !new RegExp(p.allowedPattern).test(value)) return false
  return p.maxChars === undefined || value.length <= p.maxChars
}

/** What SSM runs: parameters validated, defaults filled in, every {{ name }} replaced as text. */
const render = (params: Record<string, string> = {}): string => {
  for (const [k, v] of Object.entries(params)) if (!accepts(k, v)) throw new Error(`SSM would refuse ${k}=${JSON.stringify(v)}`)
  const values: Record<string, string> = { ...Object.fromEntries(Object.entries(doc.parameters).map(([k, p]) => [k, p.default ?? ''])), ...params }
  return `${(step?.inputs.runCommand ?? []).join('\n')}\n`.replace(PLACEHOLDER, (_, name: string) => values[name] ?? `{{${name}}}`)
}

t.test('the document: schema 2.2, one Linux shell step, every parameter declared and used', async t => {
  t.equal(doc.schemaVersion, '2.2')
  t.equal(doc.mainSteps.length, 1)
  t.equal(step?.action, 'aws:runShellScript')
  t.same(step?.precondition, { StringEquals: ['platformType', 'Linux'] })
  t.equal(step?.inputs.timeoutSeconds, '{{ executionTimeout }}')
  const used = new Set([...JSON.stringify(doc.mainSteps).matchAll(PLACEHOLDER)].map(m => m[1]))
  t.same([...used].sort(), Object.keys(doc.parameters).sort(), 'every placeholder is a parameter and every parameter is used')
  for (const [name, p] of Object.entries(doc.parameters)) {
    t.equal(p.type, 'String', name)
    t.ok(p.allowedPattern !== undefined || p.allowedValues !== undefined, `${name} is guarded`)
    t.ok(accepts(name, p.default ?? ''), `${name}'s default passes its own guard`)
  }
  t.equal(doc.parameters['branch']?.allowedPattern, SSM_BRANCH_PATTERN, 'rollout checks --branch with the same pattern')
  t.match(render({ executionTimeout: '3600' }), /^\[ -n "\$\{BASH_VERSION:-\}" \] \|\| exec \/bin\/bash "\$0" "\$@"\n/, 'first line: re-run under bash (SSM uses sh)')
})

t.test('parameter guards: hostile values are refused, real ones pass', async t => {
  const hostile = [
    '; rm -rf /', '$(reboot)', '`id`', 'main\nid', 'main\n', "main'", 'main"', '..', '../etc', 'a..b', 'a//b', '-rf', '--upload-pack=x',
    'a b', 'a\tb', 'a\\b', '$HOME', '${IFS}', 'main;id', 'main|id', 'main&&id', '>x', 'a*', '~user', 'main/', '/main', 'main.', '.hidden',
    'x'.repeat(201), 'ü',
  ]
  for (const v of hostile) t.notOk(accepts('branch', v), `branch ${JSON.stringify(v)} refused`)
  const real = ['', 'main', 'stage', 'test', 'feature/login-form', 'release/1.2.3', 'fix_bug-42', 'JIRA-123/v2', 'user.name/topic', 'v2', 'x'.repeat(200)]
  for (const v of real) t.ok(accepts('branch', v), `branch ${JSON.stringify(v)} accepted`)
  for (const v of ['yes', 'True', 'true; id', '']) t.notOk(accepts('dryRun', v), `dryRun ${JSON.stringify(v)} refused`)
  for (const v of ['info\n', 'loud', '$(id)']) t.notOk(accepts('logLevel', v), `logLevel ${JSON.stringify(v)} refused`)
  for (const v of ['59', '172801', '0', '-1', '1e5', '60 ', '3600;id']) t.notOk(accepts('executionTimeout', v), `executionTimeout ${JSON.stringify(v)} refused`)
  for (const v of ['60', '2700', '172800', '99999']) t.ok(accepts('executionTimeout', v), `executionTimeout ${v} accepted`)
})

t.test('the script: shellcheck clean and valid bash, with and without parameters', async t => {
  for (const params of [{}, { branch: 'release/1.2', dryRun: 'true', logLevel: 'debug' }] as Record<string, string>[]) {
    const script = render(params)
    const sc = spawnSync('shellcheck', ['--shell=bash', '-'], { input: script, encoding: 'utf8' })
    t.equal(sc.status, 0, `shellcheck ${JSON.stringify(params)}:\n${sc.stdout}${sc.stderr}`)
    t.equal(spawnSync('bash', ['-n'], { input: script }).status, 0, 'bash -n')
  }
})

// ---------------------------------------------------------------------------------------------
// end to end: the document's script, as SSM runs it, re-bootstrapping a sandbox on this machine

const dir = sandboxDir('ssm-doc')
const root = join(dir, 'root')
t.teardown(() => removeSandbox(dir, root))
const port = await freePort()
const repo = await createFixtureRepo({
  root: join(dir, 'git'),
  name: 'app',
  branches: { stage: appFiles({ port, greeting: 'stage' }), main: appFiles({ port, greeting: 'main' }) },
})
const secretsFile = join(dir, 'secrets.json')
writeSecrets(secretsFile, { secrets: { 'stage/app': { API_KEY: 'ssm-doc-key-1234' } } })

// `bootstrap-agent` as the release's launcher would provide it, but local mode and this checkout
const binDir = join(dir, 'bin')
mkdirSync(binDir)
writeFileSync(join(binDir, 'bootstrap-agent'), `#!/bin/sh\nexec '${process.execPath}' '${BIN}' "$@"\n`)
chmodSync(join(binDir, 'bootstrap-agent'), 0o755)

let runs = 0
/** SSM's way: the substituted text in a file, run by `sh`; a clean environment (env -i) */
const runDocument = (params: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> => {
  const file = join(dir, `_script-${++runs}.sh`)
  writeFileSync(file, render(params), { mode: 0o700 })
  const env = {
    PATH: `${binDir}:/usr/local/bin:/usr/bin:/bin`,
    HOME: process.env['HOME'] ?? '/root',
    BOOTSTRAP_LOCAL: '1',
    BOOTSTRAP_ROOT: root,
    BOOTSTRAP_SERVICE: 'app',
    BOOTSTRAP_ENVIRONMENT: 'stage',
    BOOTSTRAP_REPOSITORY: repo.fileUrl,
    BOOTSTRAP_SECRETS_FILE: secretsFile,
  }
  return new Promise(resolve => {
    const child = spawn('/usr/bin/env', ['-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), '/bin/sh', file], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', c => (stdout += c))
    child.stderr.on('data', c => (stderr += c))
    child.on('close', code => resolve({ code, stdout, stderr }))
  })
}

const lastLine = (stdout: string): Record<string, unknown> => {
  const lines = stdout.trimEnd().split('\n')
  return JSON.parse(lines[lines.length - 1] ?? 'null') as Record<string, unknown>
}

t.test('end to end: the default parameters re-bootstrap the service', async t => {
  const r = await runDocument({})
  t.equal(r.code, 0, r.stderr)
  const result = lastLine(r.stdout)
  t.match(result, { result: 'bootstrap-agent-rebootstrap', command: 'run', exitCode: 0, status: { state: { outcome: 'success', reason: 'ssm', branch: 'stage', commit: await repo.head('stage') } } })
  t.match(r.stdout, /^last lines of the run/m, 'a tail of the run log comes first')
  t.ok(r.stdout.length < 24_000, `stdout fits what SSM keeps (${r.stdout.length} of 24000 characters)`)
  t.notMatch(r.stdout + r.stderr, 'ssm-doc-key-1234', 'no secret value in the output')
  t.match(parseResultLine(r.stdout), { command: 'run', exitCode: 0, outcome: 'success', commit: await repo.head('stage') }, 'what rollout reads from it')
  t.equal((await getJson(`http://127.0.0.1:${port}/`))['greeting'], 'stage', 'the service answers')
})

t.test('end to end: dryRun plans the branch override and changes nothing', async t => {
  const before = readFileSync(join(root, 'var/lib/bootstrap-agent/state.json'), 'utf8')
  const r = await runDocument({ dryRun: 'true', branch: 'main' })
  t.equal(r.code, 0, r.stderr)
  t.match(lastLine(r.stdout), { command: 'plan', exitCode: 0, plan: { branch: 'main', branchSource: 'flag', commit: await repo.head('main') } })
  t.match(parseResultLine(r.stdout), { outcome: 'planned', commit: await repo.head('main') })
  t.equal(readFileSync(join(root, 'var/lib/bootstrap-agent/state.json'), 'utf8'), before, 'state.json untouched')
  t.equal((await getJson(`http://127.0.0.1:${port}/`))['greeting'], 'stage', 'still serving stage')
})

t.test('end to end: the branch parameter deploys that branch', async t => {
  const r = await runDocument({ branch: 'main', logLevel: 'warn' })
  t.equal(r.code, 0, r.stderr)
  t.match(lastLine(r.stdout), { command: 'run', exitCode: 0, status: { state: { outcome: 'success', branch: 'main', commit: await repo.head('main') } } })
  t.equal((await getJson(`http://127.0.0.1:${port}/`))['greeting'], 'main')
})

t.test('end to end: a failing run still ends with its result line and exit code', async t => {
  const r = await runDocument({ branch: 'no-such-branch' })
  t.equal(r.code, 2)
  t.match(r.stderr, /\[GIT_BRANCH_NOT_FOUND\]/)
  t.match(lastLine(r.stdout), { command: 'run', exitCode: 2, status: { state: { outcome: 'failed', exitCode: 2 } } })
  t.match(parseResultLine(r.stdout), { exitCode: 2, outcome: 'failed' })
  t.equal((await getJson(`http://127.0.0.1:${port}/`))['greeting'], 'main', 'the live release is untouched')
})

t.test('end to end: no agent installed is a result line too, not a silent failure', async t => {
  const file = join(dir, '_script-noagent.sh')
  writeFileSync(file, render({}), { mode: 0o700 })
  const r = spawnSync('/usr/bin/env', ['-i', 'PATH=/usr/bin:/bin', '/bin/sh', file], { encoding: 'utf8' })
  t.equal(r.status, 127)
  t.same(lastLine(r.stdout), { result: 'bootstrap-agent-rebootstrap', command: 'run', exitCode: 127, status: null })
  t.match(r.stderr, /bootstrap-agent: not installed/)
})
