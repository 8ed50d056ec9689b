#!/usr/bin/env node
// `npm run demo`: the whole pipeline in local mode, no AWS. Turns examples/demo-service into a
// local git repository with test/stage/main branches, writes a local secrets file with a random
// API key, runs `bootstrap-agent run --local` for the stage environment, and shows the service's
// health answer (a fingerprint of the key, never the key). `npm run demo:stop` stops it all.
//
// As root, repo code runs as the unprivileged `bootstrap-app`, which must reach the sandbox, the
// git remote and the agent's own files (the env preload, PM2). A checkout below a directory it
// cannot enter (root's 0700 home) cannot hold them: the demo then puts its sandbox under /var/tmp
// and runs the release artifact (npm run package) extracted there, as an instance runs it.
import { execFileSync, spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const repo = join(dirname(fileURLToPath(import.meta.url)), '..')
const isRoot = process.getuid?.() === 0

/** The first directory from / down to `dir` that other users cannot enter (no o+x), if any. */
const closedAbove = dir => {
  for (let d = dir, chain = []; ; d = dirname(d)) {
    chain.unshift(d)
    if (dirname(d) === d) return chain.find(c => (statSync(c).mode & 0o001) === 0)
  }
}

const closed = isRoot ? closedAbove(repo) : undefined
// outside the checkout only when the service user could not reach it; one sandbox per checkout
const demo = closed ? join('/var/tmp', `ec2-bootstrap-agent-demo-${createHash('sha256').update(repo).digest('hex').slice(0, 8)}`) : join(repo, '.demo')
const root = join(demo, 'root')
const shown = p => (closed ? p : relative(repo, p))
const pm2Home = join(root, 'var/lib/bootstrap-agent/home/.pm2')
const release = join(demo, 'agent/bootstrap-agent')
const pm2Cli = closed ? join(release, 'node_modules/pm2/bin/pm2') : join(repo, 'node_modules/pm2/bin/pm2')

if (process.argv.includes('--stop')) {
  if (existsSync(pm2Home)) {
    const st = statSync(pm2Home)
    // PM2 runs as the service user when the demo ran as root: stop it as that user
    const r = spawnSync(process.execPath, [pm2Cli, 'kill'], {
      env: { PATH: process.env.PATH, HOME: dirname(pm2Home), PM2_HOME: pm2Home },
      uid: st.uid, gid: st.gid, stdio: 'inherit', cwd: dirname(pm2Home),
    })
    if (r.status !== 0) process.exit(r.status ?? 1)
  }
  rmSync(demo, { recursive: true, force: true })
  console.log(`demo stopped: PM2 daemon killed and ${shown(demo)} removed`)
  process.exit(0)
}

if (!existsSync(join(repo, 'dist/bin.js'))) execFileSync(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', repo], { stdio: 'inherit' })
if (closed) {
  console.log(`${closed} is mode 0${(statSync(closed).mode & 0o777).toString(8)}: the service user bootstrap-app cannot reach this checkout,`)
  console.log(`so the demo runs in ${demo} with the release artifact (npm run package) extracted there\n`)
  mkdirSync(demo, { recursive: true, mode: 0o755 })
  execFileSync(process.execPath, [join(repo, 'scripts/package.mjs'), '--reuse'], { stdio: ['ignore', 'ignore', 'inherit'] })
  const version = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')).version
  rmSync(dirname(release), { recursive: true, force: true })
  mkdirSync(dirname(release), { recursive: true, mode: 0o755 })
  execFileSync('tar', ['-xzf', join(repo, `.cache/release/bootstrap-agent-${version}.tar.gz`), '-C', dirname(release)])
}
const bin = closed ? join(release, 'dist/agent.mjs') : join(repo, 'dist/bin.js')

// 1. the app repository: three branches, each with its own greeting
const bare = join(demo, 'remote/demo-service.git')
if (!existsSync(bare)) {
  mkdirSync(dirname(bare), { recursive: true })
  execFileSync('git', ['init', '--bare', '--quiet', '--initial-branch', 'main', bare])
  const work = mkdtempSync(join(tmpdir(), 'demo-work-'))
  const git = (...a) => execFileSync('git', a, {
    cwd: work,
    env: { ...process.env, GIT_AUTHOR_NAME: 'demo', GIT_AUTHOR_EMAIL: 'demo@example.com', GIT_COMMITTER_NAME: 'demo', GIT_COMMITTER_EMAIL: 'demo@example.com' },
  })
  git('init', '--quiet', '--initial-branch', 'main')
  for (const branch of ['main', 'test', 'stage']) {
    if (branch !== 'main') git('checkout', '--quiet', '-B', branch, 'main')
    cpSync(join(repo, 'examples/demo-service'), work, { recursive: true })
    writeFileSync(join(work, 'release.json'), `${JSON.stringify({ greeting: `hello from the ${branch} branch` })}\n`)
    git('add', '-A')
    git('commit', '--quiet', '-m', `demo-service on ${branch}`)
    git('push', '--quiet', bare, `${branch}:${branch}`)
  }
  rmSync(work, { recursive: true, force: true })
}

// 2. local stand-in for Secrets Manager: a random key, written 0600, never printed
const secretsFile = join(demo, 'secrets.json')
if (!existsSync(secretsFile)) {
  const apiKey = `demo-${randomBytes(12).toString('hex')}`
  writeFileSync(secretsFile, `${JSON.stringify({ secrets: { 'stage/demo-service': { API_KEY: apiKey } }, parameters: { '/stage/demo-service/greeting-suffix': '!' } }, null, 2)}\n`, { mode: 0o600 })
}

// 3. the agent, exactly as an operator would run it
console.log(`$ bootstrap-agent run --local --root ${shown(root)} --tag Service=demo-service --tag Environment=stage ...\n`)
const r = spawnSync(process.execPath, [bin, 'run', '--local', '--root', root,
  '--tag', 'Service=demo-service', '--tag', 'Environment=stage', '--tag', `Repository=file://${bare}`,
  '--secrets-file', secretsFile], { stdio: 'inherit' })
if (r.status !== 0) {
  console.error(`\nthe agent exited ${r.status}; see the messages above, then: npm run demo:stop`)
  process.exit(r.status ?? 1)
}

// 4. proof: the service answers, and the key reached it (fingerprint only)
const res = await fetch('http://127.0.0.1:4780/health')
const body = await res.json()
const key = JSON.parse(readFileSync(secretsFile, 'utf8')).secrets['stage/demo-service'].API_KEY
const expected = createHash('sha256').update(key).digest('hex').slice(0, 12)
if (!process.stdout.isTTY) spawnSync(process.execPath, [bin, 'status', '--root', root], { stdio: 'inherit' })
console.log(`\nGET http://127.0.0.1:4780/health -> ${res.status} ${JSON.stringify(body)}`)
console.log(`secret fingerprint ${body.apiKeyFingerprint === expected ? 'matches' : 'DOES NOT match'} the key in ${shown(secretsFile)}`)
console.log(`\nnext: npm run agent -- status --root ${shown(root)}   |   stop everything: npm run demo:stop`)
process.exit(body.apiKeyFingerprint === expected ? 0 : 1)
