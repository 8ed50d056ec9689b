#!/usr/bin/env node
// Prerequisites of `npm run bench`, idempotent (bench/run.mjs calls it first; it can run alone):
//   1. Debian packages: awscli (the baseline's AWS CLI) and jq (the baseline's JSON tool).
//   2. moto in .cache/moto-venv (installed by scripts/test-setup.mjs, the one place that pins it).
//   3. the agent built: dist/ (tsc) and the release artifact (npm run package -- --reuse).
//   4. a warm npm cache for both fixtures (the API app, the React admin panel) in
//      .cache/bench-npm-cache, filled once from the registry and then proven complete by an
//      install with --offline. Both the agent and the baseline install from a copy of it with
//      `offline=true`, so no timed run touches the network.
//   5. the service user `bootstrap-app`, created exactly as the agent creates it, so the warm
//      cache can be handed to it before the agent's first run.
// --no-build skips step 3 (use what dist/ and .cache/release hold).
import { execFileSync, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const REPO = join(dirname(fileURLToPath(import.meta.url)), '..')
export const FIXTURE = join(REPO, 'bench/fixture/app')
/** the React admin panel: vite build, served static (the release cache's benchmark) */
export const ADMIN_FIXTURE = join(REPO, 'bench/fixture/admin')
const FIXTURES = [FIXTURE, ADMIN_FIXTURE]
export const NPM_CACHE = join(REPO, '.cache/bench-npm-cache')
export const SERVICE_USER = 'bootstrap-app'

const log = msg => console.log(`bench setup: ${msg}`)
const have = cmd => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0

const run = (file, args, opts = {}) => {
  const r = spawnSync(file, args, { encoding: 'utf8', ...opts })
  if (r.status !== 0) throw new Error(`${file} ${args.join(' ')} failed (exit ${r.status ?? r.signal}):\n${r.stdout ?? ''}${r.stderr ?? ''}`)
  return r.stdout
}

/** Lockfiles' hash: the warm cache is redone when a fixture's lockfile changes. */
const lockHash = () => {
  const h = createHash('sha256')
  for (const f of FIXTURES) h.update(readFileSync(join(f, 'package-lock.json')))
  return h.digest('hex')
}

/** A clean npm environment: no user npmrc of whoever runs the bench (HOME is a temp dir). */
export const npmEnv = (home, cache) => ({
  PATH: '/usr/local/bin:/usr/bin:/bin',
  HOME: home,
  npm_config_cache: cache,
  npm_config_update_notifier: 'false',
  LANG: 'C.UTF-8',
})

const aptPackages = () => {
  const need = []
  // the Debian AWS CLI (v2) lives in /usr/bin; another `aws` earlier on PATH is not the baseline's
  if (!existsSync('/usr/bin/aws')) need.push('awscli')
  if (!have('jq')) need.push('jq')
  if (!have('curl')) need.push('curl')
  if (!existsSync('/usr/bin/time')) need.push('time')
  if (!need.length) return
  if (process.getuid?.() !== 0) throw new Error(`missing ${need.join(', ')}: apt-get install ${need.join(' ')}`)
  log(`installing ${need.join(', ')} from Debian`)
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit' })
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...need], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
}

const moto = () => {
  if (existsSync(join(REPO, '.cache/moto-venv/bin/moto_server'))) return
  log('moto missing: running scripts/test-setup.mjs (it pins and installs moto)')
  execFileSync(process.execPath, [join(REPO, 'scripts/test-setup.mjs')], { stdio: 'inherit' })
}

const build = () => {
  log('building dist/ (tsc) and the release artifact (npm run package -- --reuse)')
  run(process.execPath, [join(REPO, 'node_modules/typescript/bin/tsc'), '-p', REPO])
  run(process.execPath, [join(REPO, 'scripts/package.mjs'), '--reuse'])
}

const warmCache = () => {
  const stamp = join(NPM_CACHE, '.bench-lock-sha256')
  if (existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === lockHash()) return
  log(`warming ${NPM_CACHE} from the registry (once per lockfile)`)
  rmSync(NPM_CACHE, { recursive: true, force: true })
  mkdirSync(NPM_CACHE, { recursive: true })
  const work = mkdtempSync(join(tmpdir(), 'bench-warm-'))
  try {
    for (const [i, fixture] of FIXTURES.entries()) {
      for (const pass of ['online', 'offline']) {
        const dir = join(work, `${i}-${pass}`)
        mkdirSync(join(dir, 'home'), { recursive: true })
        cpSync(join(fixture, 'package.json'), join(dir, 'package.json'))
        cpSync(join(fixture, 'package-lock.json'), join(dir, 'package-lock.json'))
        const extra = pass === 'offline' ? ['--offline'] : []
        run('npm', ['ci', '--no-audit', '--no-fund', ...extra], { cwd: dir, env: npmEnv(join(dir, 'home'), NPM_CACHE) })
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
  writeFileSync(stamp, `${lockHash()}\n`)
  log('warm cache complete (an --offline npm ci succeeded from it)')
}

const serviceUser = () => {
  if (spawnSync('getent', ['passwd', SERVICE_USER], { stdio: 'ignore' }).status === 0) return
  // the same command as agent/src/core/service-user.ts
  run('useradd', ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', SERVICE_USER])
  log(`created service user ${SERVICE_USER}`)
}

export const setup = ({ build: doBuild = true } = {}) => {
  if (process.getuid?.() !== 0) throw new Error('the benchmark runs as root (as the agent does on an instance)')
  aptPackages()
  moto()
  if (doBuild) build()
  warmCache()
  serviceUser()
  const aws = run('/usr/bin/aws', ['--version']).trim()
  log(`ok: ${aws}; ${run('jq', ['--version']).trim()}; node ${process.version}; npm ${run('npm', ['--version'], { env: npmEnv(tmpdir(), NPM_CACHE) }).trim()}`)
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  setup({ build: !process.argv.includes('--no-build') })
}
