#!/usr/bin/env node
// `npm run demo`: the whole pipeline in local mode, no AWS. Turns examples/demo-service into a
// local git repository with test/stage/main branches, writes a local secrets file with a random
// API key, runs `bootstrap-agent run --local` for the stage environment, and shows the service's
// health answer (a fingerprint of the key, never the key). `npm run demo:stop` stops it all.
import { execFileSync, spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const repo = join(dirname(fileURLToPath(import.meta.url)), '..')
const demo = join(repo, '.demo')
const root = join(demo, 'root')
const bin = join(repo, 'dist/bin.js')
const pm2Home = join(root, 'var/lib/bootstrap-agent/home/.pm2')

if (process.argv.includes('--stop')) {
  if (existsSync(pm2Home)) {
    const st = statSync(pm2Home)
    // PM2 runs as the service user when the demo ran as root: stop it as that user
    const r = spawnSync(process.execPath, [join(repo, 'node_modules/pm2/bin/pm2'), 'kill'], {
      env: { PATH: process.env.PATH, HOME: dirname(pm2Home), PM2_HOME: pm2Home },
      uid: st.uid, gid: st.gid, stdio: 'inherit', cwd: dirname(pm2Home),
    })
    if (r.status !== 0) process.exit(r.status ?? 1)
  }
  rmSync(demo, { recursive: true, force: true })
  console.log('demo stopped: PM2 daemon killed and .demo/ removed')
  process.exit(0)
}

if (!existsSync(bin)) execFileSync(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', repo], { stdio: 'inherit' })

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
console.log('$ bootstrap-agent run --local --root .demo/root --tag Service=demo-service --tag Environment=stage ...\n')
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
console.log(`secret fingerprint ${body.apiKeyFingerprint === expected ? 'matches' : 'DOES NOT match'} the key in .demo/secrets.json`)
console.log('\nnext: npm run agent -- status --root .demo/root   |   stop everything: npm run demo:stop')
process.exit(body.apiKeyFingerprint === expected ? 0 : 1)
