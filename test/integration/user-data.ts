/**
 * The rendered user-data as a launch template would carry it: rendered by the CLI with the
 * systemd unit the project ships, shellcheck clean (Debian's, default severity), `bash -n`, under
 * 16 KB; then executed for real in a sandbox PREFIX against a local HTTP server holding the
 * release artifact (npm run package). No systemd runs as PID 1 here, so `systemctl` is a stub on
 * PATH that records its arguments. Node: node-install=preinstalled (this machine's Node).
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseAgentEnv } from '../../agent/src/config/agent-env.js'
import { compactUnit, USER_DATA_MAX_BYTES } from '../../agent/src/operator/user-data.js'
import { startFileServer } from '../helpers/file-server.js'
import { createFixtureRepo } from '../helpers/fixture-repo.js'
import { buildRelease, cleanPath, runClean } from '../helpers/release.js'
import { appFiles, freePort, REPO, removeSandbox, runCli, sandboxDir } from '../helpers/sandbox.js'

const release = buildRelease()
const dir = sandboxDir('user-data')
const artifactPath = `/releases/${release.fileName}`

// a stand-in for an official Node tarball (node-install=ubuntu): wrappers around this machine's
// Node, in the official layout
const nodeTree = join(dir, 'node-src/node-v22.0.0-linux-x64/bin')
mkdirSync(nodeTree, { recursive: true })
for (const b of ['node', 'npm', 'npx']) {
  writeFileSync(join(nodeTree, b), `#!/bin/sh\nexec ${b === 'node' ? process.execPath : `/usr/bin/${b}`} "$@"\n`)
  chmodSync(join(nodeTree, b), 0o755)
}
const nodeTarball = join(dir, 'node-v22.0.0-linux-x64.tar.gz')
spawnSync('tar', ['-czf', nodeTarball, '-C', join(dir, 'node-src'), 'node-v22.0.0-linux-x64'])
const nodeSha256 = createHash('sha256').update(readFileSync(nodeTarball)).digest('hex')

const server = await startFileServer({ [artifactPath]: release.tarball, [`${artifactPath}.sha256`]: release.checksumFile, '/node.tar.gz': nodeTarball })
t.teardown(async () => {
  await server.stop()
  removeSandbox(dir)
})

// the operator's way: the checksum comes from the .sha256 beside the artifact
const sha256 = (await (await fetch(server.url(`${artifactPath}.sha256`))).text()).split(' ')[0] ?? ''
const pwned = join(dir, 'pwned')
const params: Record<string, string> = {
  BOOTSTRAP_LOG_LEVEL: 'debug',
  BOOTSTRAP_BRANCH_MAP: 'stage=main,prod=main',
  // free text as far as the agent is concerned: shell syntax must reach agent.env as data
  BOOTSTRAP_TAG_KEY_BRANCH: `Br'anch "$(touch ${pwned})" \`touch ${pwned}\` $HOME \\ #`,
}
const render = async (out: string, sha = sha256, node = ['node-install=preinstalled']) => {
  const args = ['render-user-data', '--template', 'bootstrap', '--out', out,
    '--param', `artifact-url=${server.url(artifactPath)}`, '--param', `artifact-sha256=${sha}`,
    '--param', 'region=eu-west-1', ...node.flatMap(p => ['--param', p]),
    ...Object.entries(params).flatMap(([k, v]) => ['--param', `${k}=${v}`])]
  return runCli(args)
}

const script = join(dir, 'user-data.sh')
const rendered = await render(script)

t.test('rendered by the CLI: size reported, under 16 KB, bash -n, shellcheck clean', async t => {
  t.equal(rendered.code, 0, rendered.stderr)
  const bytes = statSync(script).size
  t.match(rendered.stderr, `render-user-data: wrote ${script}: ${bytes} bytes of user-data (EC2's limit: ${USER_DATA_MAX_BYTES})`)
  t.ok(bytes < USER_DATA_MAX_BYTES, `${bytes} bytes`)
  t.comment(`rendered user-data: ${bytes} bytes`)
  const syntax = spawnSync('bash', ['-n', script], { encoding: 'utf8' })
  t.equal(syntax.status, 0, syntax.stderr)
  const lint = spawnSync('shellcheck', [script], { encoding: 'utf8' })
  t.equal(lint.error, undefined, 'shellcheck is installed (scripts/test-setup.mjs)')
  t.equal(lint.status, 0, lint.stdout + lint.stderr)
})

t.test('render errors exit 2 and name the parameter', async t => {
  const unknown = await runCli(['render-user-data', '--template', 'bootstrap', '--param', 'artifact-url=https://a.example.com/x', '--param', 'DB_PASSWORD=x'])
  t.equal(unknown.code, 2)
  t.match(unknown.stderr, /--param DB_PASSWORD looks like a secret/)
  const template = await runCli(['render-user-data', '--template', 'nope'])
  t.equal(template.code, 2)
  t.match(template.stderr, /unknown --template "nope": the templates are bootstrap/)
  const unit = await runCli(['render-user-data', '--template', 'bootstrap', '--unit-file', join(dir, 'missing.service')])
  t.equal(unit.code, 2)
  t.match(unit.stderr, /the systemd unit the user-data installs, .*missing.service does not exist/)
  const help = await runCli(['render-user-data', '--help'])
  t.match(help.stdout, /Usage: bootstrap-agent render-user-data[^]*artifact-sha256/)
})

// systemctl stand-in: no systemd runs as PID 1 on this machine
const stubDir = join(dir, 'stub')
const stubLog = join(dir, 'systemctl.log')
mkdirSync(stubDir)
writeFileSync(join(stubDir, 'systemctl'), `#!/bin/sh\nprintf '%s\\n' "$*" >> '${stubLog}'\n`)
chmodSync(join(stubDir, 'systemctl'), 0o755)

const runScript = (file: string, prefix: string, path = `${stubDir}:${cleanPath}`) =>
  runClean('/bin/bash', [file], { PATH: path, PREFIX: prefix, HOME: '/root', LANG: 'C.UTF-8' })

const prefix = join(dir, 'prefix')
const opt = join(prefix, 'opt/bootstrap-agent')
const unitSource = readFileSync(join(REPO, 'systemd/bootstrap-agent.service'), 'utf8')
const watchUnitSource = readFileSync(join(REPO, 'systemd/bootstrap-agent-watch.service'), 'utf8')

t.test('end to end: installed, configured, unit enabled, agent runs plan --local; twice', async t => {
  const first = await runScript(script, prefix)
  t.equal(first.code, 0, 'the first run succeeds', { output: first.stdout + first.stderr })
  t.match(first.stdout, /user-data: OK: bootstrap-agent \S+ installed/)
  t.equal(server.requests(artifactPath), 1)

  // the release, the current link and the launcher on PATH
  t.equal(readlinkSync(join(opt, 'current')), release.version)
  t.ok(existsSync(join(opt, release.version, 'dist/agent.mjs')))
  t.equal(readFileSync(join(opt, release.version, '.artifact-sha256'), 'utf8').trim(), sha256)
  t.equal(readlinkSync(join(prefix, 'usr/local/bin/bootstrap-agent')), join(opt, 'current/bin/bootstrap-agent'))

  // agent.env: 0644, every parameter back byte-exact, no command of a value ran
  const agentEnv = join(prefix, 'etc/bootstrap-agent/agent.env')
  t.equal(statSync(agentEnv).mode & 0o777, 0o644)
  t.same(parseAgentEnv(readFileSync(agentEnv, 'utf8'), agentEnv), { ...params, AWS_REGION: 'eu-west-1' })
  t.notOk(existsSync(pwned), 'no value was executed')

  // the unit, and what systemctl was asked to do
  const unit = join(prefix, 'etc/systemd/system/bootstrap-agent.service')
  t.equal(readFileSync(unit, 'utf8'), `${compactUnit(unitSource)}\n`)
  t.equal(statSync(unit).mode & 0o777, 0o644)
  const watchUnit = join(prefix, 'etc/systemd/system/bootstrap-agent-watch.service')
  t.equal(readFileSync(watchUnit, 'utf8'), `${compactUnit(watchUnitSource, 'bootstrap-agent-watch.service')}\n`, 'the watch unit too')
  t.equal(statSync(watchUnit).mode & 0o777, 0o644)
  t.same(readFileSync(stubLog, 'utf8').split('\n'), ['daemon-reload', 'enable --now --no-block bootstrap-agent.service bootstrap-agent-watch.service', ''])
  t.match(readFileSync(join(prefix, 'var/log/bootstrap-agent/user-data.log'), 'utf8'), /step download[^]*step verify[^]*step node[^]*step install[^]*step config[^]*step unit[^]*step start[^]*user-data: OK/)

  // the installed agent, from its launcher on PATH, reads the agent.env user-data wrote
  const port = await freePort()
  const repo = await createFixtureRepo({ root: join(dir, 'git'), name: 'app', branches: { stage: appFiles({ port, greeting: 'stage' }), main: appFiles({ port, greeting: 'main' }) } })
  const plan = await runClean(join(prefix, 'usr/local/bin/bootstrap-agent'), ['plan', '--local', '--root', prefix, '--json', '--tag', 'Service=app', '--tag', 'Environment=stage', '--tag', `Repository=${repo.fileUrl}`], { PATH: cleanPath, HOME: '/root' })
  t.equal(plan.code, 0, plan.stderr)
  t.match(JSON.parse(plan.stdout), { branch: 'main', commit: await repo.head('main') }, 'stage -> main from BOOTSTRAP_BRANCH_MAP in agent.env')

  // again: converges without downloading or re-installing
  const installed = statSync(join(opt, release.version)).ino
  const second = await runScript(script, prefix)
  t.equal(second.code, 0, 'the second run succeeds', { output: second.stdout + second.stderr })
  t.match(second.stdout, /already here and verified[^]*already installed[^]*user-data: OK/)
  t.equal(server.requests(artifactPath), 1, 'no second download')
  t.equal(statSync(join(opt, release.version)).ino, installed, 'the release directory was kept')
  t.same(readdirSync(opt).sort(), [release.version, 'current'], 'no staging directory left behind')
  t.same(parseAgentEnv(readFileSync(agentEnv, 'utf8'), agentEnv), { ...params, AWS_REGION: 'eu-west-1' })
  t.equal(readFileSync(stubLog, 'utf8').split('\n').filter(l => l.startsWith('enable --now')).length, 2)
})

t.test('a wrong sha256: FAILED at step verify, nothing installed', async t => {
  const bad = join(dir, 'bad-sha.sh')
  t.equal((await render(bad, '0'.repeat(64))).code, 0)
  const p = join(dir, 'prefix-bad')
  const before = existsSync(stubLog) ? readFileSync(stubLog, 'utf8') : ''
  const r = await runScript(bad, p)
  t.equal(r.code, 1)
  t.match(r.stdout + r.stderr, /user-data: the download does not match artifact-sha256: nothing was installed\nuser-data: FAILED at step verify \(exit 1\)/)
  for (const d of ['opt', 'etc', 'usr']) t.notOk(existsSync(join(p, d)), `nothing under ${d}/`)
  t.same(readdirSync(join(p, 'var/cache/bootstrap-agent')), [], 'the bad download is gone')
  t.equal(existsSync(stubLog) ? readFileSync(stubLog, 'utf8') : '', before, 'systemctl was not called')
})

t.test('a failing step names itself: systemctl refuses, FAILED at step start', async t => {
  const failing = join(dir, 'stub-failing')
  mkdirSync(failing)
  writeFileSync(join(failing, 'systemctl'), '#!/bin/sh\necho "Failed to connect to bus: No such file or directory" >&2\nexit 1\n')
  chmodSync(join(failing, 'systemctl'), 0o755)
  const r = await runScript(script, join(dir, 'prefix-no-systemd'), `${failing}:${cleanPath}`)
  t.equal(r.code, 1)
  t.match(r.stdout + r.stderr, /Failed to connect to bus[^]*user-data: FAILED at step start \(exit 1\)/)
  t.notMatch(r.stdout, 'user-data: OK')
})

t.test('node-install=ubuntu: the Node tarball is checked, unpacked and linked; too old a Node stops the run', async t => {
  const ubuntu = join(dir, 'ubuntu.sh')
  t.equal((await render(ubuntu, sha256, ['node-install=ubuntu', `node-url=${server.url('/node.tar.gz')}`, `node-sha256=${nodeSha256}`])).code, 0)
  const p = join(dir, 'prefix-ubuntu')
  const r = await runScript(ubuntu, p)
  const nodeDir = join(p, 'opt/node', nodeSha256)
  for (const b of ['node', 'npm', 'npx']) t.equal(readlinkSync(join(p, 'usr/local/bin', b)), join(nodeDir, 'bin', b), `${b} is linked`)
  // the wrapped Node is this machine's; below 22, the floor for a Node that user-data installs
  const major = Number(process.versions.node.split('.')[0])
  if (major < 22) {
    t.equal(r.code, 1)
    t.match(r.stdout + r.stderr, new RegExp(`user-data: Node 22 or newer is needed, found Node ${major}\nuser-data: FAILED at step node`))
    t.notOk(existsSync(join(p, 'opt/bootstrap-agent')), 'the agent was not installed')
  } else {
    t.equal(r.code, 0, 'a Node 22+ machine installs', { output: r.stdout + r.stderr })
  }
  const bad = join(dir, 'ubuntu-bad.sh')
  t.equal((await render(bad, sha256, ['node-install=ubuntu', `node-url=${server.url('/node.tar.gz')}`, `node-sha256=${'1'.repeat(64)}`])).code, 0)
  const r2 = await runScript(bad, join(dir, 'prefix-ubuntu-bad'))
  t.equal(r2.code, 1)
  t.match(r2.stdout + r2.stderr, /user-data: the Node download does not match node-sha256\nuser-data: FAILED at step node/)
  t.notOk(existsSync(join(dir, 'prefix-ubuntu-bad/opt/node')))
})
