// The benchmark's moving parts: moto (seeded with the SDK), fixture git repositories, sandbox
// roots with the warm npm cache, the agent and the baseline as timed child processes (the agent
// sampled through /proc for its peak RSS and its own CPU time), and PM2 teardown.
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CreateSecretCommand, PutSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager'
import { DeleteParametersCommand, GetParametersByPathCommand, PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm'
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3'
import { ADMIN_FIXTURE, FIXTURE, NPM_CACHE, REPO, SERVICE_USER } from '../setup.mjs'

export const PM2_BIN = join(REPO, 'node_modules/pm2/bin/pm2')
export const REGION = 'us-east-1'
const CLK_TCK = 100 // getconf CLK_TCK on Linux

export const sleep = ms => new Promise(r => setTimeout(r, ms))

export const freePort = () =>
  new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })

/** A temp dir the service user can traverse (mkdtemp makes 0700 dirs). */
export const workDir = prefix => {
  const d = mkdtempSync(join(tmpdir(), `${prefix}-`))
  chmodSync(d, 0o755)
  return d
}

export const serviceUser = () => {
  const f = spawnSync('getent', ['passwd', SERVICE_USER], { encoding: 'utf8' }).stdout.trim().split(':')
  return { uid: Number(f[2]), gid: Number(f[3]) }
}

// -- moto ------------------------------------------------------------------------------------

export const startMoto = async () => {
  const bin = join(REPO, '.cache/moto-venv/bin/moto_server')
  const port = await freePort()
  const endpoint = `http://127.0.0.1:${port}`
  const child = spawn(bin, ['-H', '127.0.0.1', '-p', String(port)], { env: { PATH: '/usr/bin:/bin', HOME: tmpdir() }, stdio: ['ignore', 'ignore', 'pipe'] })
  let tail = ''
  child.stderr.on('data', c => (tail = (tail + c).slice(-3000)))
  const exited = new Promise(r => child.once('exit', r))
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`moto exited:\n${tail}`)
    if (await fetch(`${endpoint}/moto-api/`).then(r => r.ok, () => false)) break
    if (i > 300) throw new Error(`moto did not answer on ${endpoint}:\n${tail}`)
    await sleep(100)
  }
  const aws = { region: REGION, endpoint, credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' } }
  const sm = new SecretsManagerClient(aws)
  const ssm = new SSMClient(aws)
  const s3 = new S3Client({ ...aws, forcePathStyle: true })
  return {
    endpoint,
    /** a bucket in moto's S3 (the release cache) */
    createBucket: async name => void (await s3.send(new CreateBucketCommand({ Bucket: name }))),
    /** creates or replaces `<env>/<service>` with this JSON object */
    async putSecret(name, obj) {
      const SecretString = JSON.stringify(obj)
      try {
        await sm.send(new CreateSecretCommand({ Name: name, SecretString }))
      } catch (e) {
        if (e.name !== 'ResourceExistsException') throw e
        await sm.send(new PutSecretValueCommand({ SecretId: name, SecretString }))
      }
    },
    /** makes the parameters under `path` exactly these (name relative to path -> value) */
    async setParameters(path, params) {
      const old = []
      let NextToken
      do {
        const r = await ssm.send(new GetParametersByPathCommand({ Path: path, Recursive: true, MaxResults: 10, NextToken }))
        old.push(...(r.Parameters ?? []).map(p => p.Name))
        NextToken = r.NextToken
      } while (NextToken)
      for (let i = 0; i < old.length; i += 10) await ssm.send(new DeleteParametersCommand({ Names: old.slice(i, i + 10) }))
      const entries = Object.entries(params)
      for (let i = 0; i < entries.length; i += 20) {
        await Promise.all(entries.slice(i, i + 20).map(([k, v]) => ssm.send(new PutParameterCommand({ Name: `${path}${k}`, Value: v, Type: 'SecureString', Overwrite: true }))))
      }
    },
    async stop() {
      sm.destroy()
      ssm.destroy()
      s3.destroy()
      if (child.exitCode === null) child.kill('SIGTERM')
      await exited
    },
  }
}

// -- fixture repositories ----------------------------------------------------------------------

const gitEnv = {
  PATH: '/usr/bin:/bin',
  HOME: tmpdir(),
  GIT_AUTHOR_NAME: 'Bench',
  GIT_AUTHOR_EMAIL: 'bench@example.invalid',
  GIT_COMMITTER_NAME: 'Bench',
  GIT_COMMITTER_EMAIL: 'bench@example.invalid',
  GIT_CONFIG_NOSYSTEM: '1',
}
const git = (cwd, ...args) => {
  const r = spawnSync('git', args, { cwd, env: gitEnv, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`git ${args.join(' ')}: ${r.stderr}`)
  return r.stdout.trim()
}

/** The manifest of each fixture: the API answers /health; the admin panel is built by vite and
 * served static by PM2, its build number in /build.json (public/build.json, copied by the build). */
const MANIFESTS = {
  api: port => ({
    start: { script: 'server.js' },
    env: { PORT: String(port) },
    health: { url: `http://127.0.0.1:${port}/health`, timeoutSeconds: 60 },
    requiredEnv: ['API_KEY'],
  }),
  admin: port => ({
    build: ['npm', 'run', 'build'],
    start: { static: { dir: 'dist', port, spa: true } },
    health: { url: `http://127.0.0.1:${port}/build.json`, timeoutSeconds: 60 },
  }),
}
const FILES = { api: [FIXTURE, ['package.json', 'package-lock.json', 'server.js']], admin: [ADMIN_FIXTURE, ['package.json', 'package-lock.json', 'index.html', 'vite.config.js', 'src', 'public']] }
/** where a fixture keeps its build number: the API's release.json, the admin panel's public/build.json */
const BUILD_FILE = { api: 'release.json', admin: 'public/build.json' }
export const HEALTH_PATH = { api: '/health', admin: '/build.json' }

/**
 * A bare repository `<dir>/<service>.git` whose `stage` branch holds a fixture (`kind`: the API
 * app or the admin panel), a manifest for `service` on `port`, and its build number;
 * `commit(n)` pushes a new commit that changes only the build number (the lockfile stays the same).
 */
export const createRepo = (dir, service, port, kind = 'api') => {
  const bare = join(dir, `${service}.git`)
  const work = join(dir, `${service}.work`)
  mkdirSync(bare, { recursive: true })
  git(bare, 'init', '--quiet', '--bare')
  mkdirSync(work, { recursive: true })
  git(work, 'init', '--quiet', '-b', 'stage')
  const [fixture, files] = FILES[kind]
  for (const f of files) cpSync(join(fixture, f), join(work, f), { recursive: true })
  writeFileSync(join(work, 'bootstrap-agent.json'), `${JSON.stringify({ version: 1, services: { [service]: MANIFESTS[kind](port) } }, null, 2)}\n`)
  const commit = build => {
    writeFileSync(join(work, BUILD_FILE[kind]), `${JSON.stringify({ build })}\n`)
    git(work, 'add', '--all')
    git(work, 'commit', '--quiet', '-m', `build ${build}`)
    git(work, 'push', '--quiet', bare, 'HEAD:refs/heads/stage')
  }
  commit(1)
  git(bare, 'symbolic-ref', 'HEAD', 'refs/heads/stage')
  return { url: `file://${bare}`, commit, kind }
}

// -- sandbox roots -----------------------------------------------------------------------------

/** npm config both sides get in their HOME: install only from the warm cache. */
const NPMRC = 'offline=true\nfund=false\naudit=false\nupdate-notifier=false\n'

const chownTree = (dir, uid, gid) => {
  chownSync(dir, uid, gid)
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) chownTree(p, uid, gid)
    else chownSync(p, uid, gid)
  }
}

/** A fresh agent root whose service-user home already holds the warm npm cache (owned by it). */
export const freshAgentRoot = root => {
  rmSync(root, { recursive: true, force: true })
  const home = join(root, 'var/lib/bootstrap-agent/home')
  mkdirSync(home, { recursive: true, mode: 0o755 })
  chmodSync(root, 0o755)
  cpSync(NPM_CACHE, join(home, '.npm'), { recursive: true })
  writeFileSync(join(home, '.npmrc'), NPMRC)
  const { uid, gid } = serviceUser()
  chownTree(home, uid, gid)
  chmodSync(home, 0o700)
  return root
}

/** A fresh baseline root: its HOME holds the same warm cache and .npmrc (root-owned). */
export const freshBaselineRoot = root => {
  rmSync(root, { recursive: true, force: true })
  const home = join(root, 'home')
  mkdirSync(home, { recursive: true })
  cpSync(NPM_CACHE, join(home, '.npm'), { recursive: true })
  writeFileSync(join(home, '.npmrc'), NPMRC)
  return root
}

const pm2 = (args, env, ids = {}) => spawnSync(process.execPath, [PM2_BIN, ...args], { env: { PATH: '/usr/bin:/bin', ...env }, encoding: 'utf8', timeout: 30_000, ...ids })

/** Stops the PM2 daemon (and its apps) of an agent root or a baseline root. */
export const killPm2 = (root, side) => {
  if (side === 'agent') {
    const home = join(root, 'var/lib/bootstrap-agent/home')
    if (existsSync(join(home, '.pm2'))) pm2(['kill'], { HOME: home, PM2_HOME: join(home, '.pm2') }, { ...serviceUser(), cwd: home })
  } else if (existsSync(join(root, 'pm2'))) {
    pm2(['kill'], { HOME: join(root, 'home'), PM2_HOME: join(root, 'pm2') })
  }
}

/**
 * PM2's own costs, as the service user on an empty PM2_HOME: a cold daemon spawn (`pm2 ping`),
 * then one CLI call against the running daemon (`pm2 jlist`, median of 3): what each PM2 call
 * of the agent costs at least.
 */
export const pm2Costs = dir => {
  const home = join(dir, 'pm2-probe')
  rmSync(home, { recursive: true, force: true })
  mkdirSync(home, { recursive: true })
  const { uid, gid } = serviceUser()
  chownSync(home, uid, gid)
  const env = { HOME: home, PM2_HOME: join(home, '.pm2'), PM2_DISABLE_VERSION_CHECK: 'true' }
  const call = args => {
    const t0 = performance.now()
    const r = pm2(args, env, { uid, gid, cwd: home })
    if (r.status !== 0) throw new Error(`pm2 ${args.join(' ')} failed: ${r.stderr}`)
    return performance.now() - t0
  }
  try {
    const spawnMs = call(['ping'])
    const jlistMs = median([call(['jlist']), call(['jlist']), call(['jlist'])])
    return { spawnMs, jlistMs }
  } finally {
    pm2(['kill'], env, { uid, gid, cwd: home })
    rmSync(home, { recursive: true, force: true })
  }
}

// -- timed processes ---------------------------------------------------------------------------

/** /proc/<pid>: peak RSS (VmHWM, kB) and own CPU time (utime+stime, ms), excluding children. */
const probe = pid => {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const hwm = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0)
    if (!hwm) return undefined // a zombie: its memory is gone, keep the last live sample
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return { hwmKb: hwm, cpuMs: ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK }
  } catch {
    return undefined // gone
  }
}

/**
 * Runs `file args` with exactly `env`, timing it from spawn to exit. With `sample`, polls the
 * process every 10 ms for its peak RSS and CPU (the last sample before exit; VmHWM is a
 * high-water mark, so a late sample loses nothing but the final few ms of CPU).
 */
export const timed = (file, args, env, { sample = false, cwd } = {}) =>
  new Promise((resolve, reject) => {
    const spawnedAt = Date.now()
    const t0 = performance.now()
    const child = spawn(file, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', c => (stdout += c))
    child.stderr.on('data', c => (stderr += c))
    let last
    const timer = sample ? setInterval(() => (last = probe(child.pid) ?? last), 10) : undefined
    child.once('error', reject)
    child.once('exit', code => {
      const ms = performance.now() - t0
      const exitedAt = Date.now()
      if (timer) clearInterval(timer)
      // 'exit' can come before the pipes close; wait for them so output is complete
      let pending = 2
      const done = () => --pending === 0 && resolve({ code, ms, spawnedAt, exitedAt, stdout, stderr, peakRssMb: last && last.hwmKb / 1024, cpuMs: last?.cpuMs })
      if (child.stdout.readableEnded) done()
      else child.stdout.once('end', done)
      if (child.stderr.readableEnded) done()
      else child.stderr.once('end', done)
    })
  })

export const readState = root => JSON.parse(readFileSync(join(root, 'var/lib/bootstrap-agent/state.json'), 'utf8'))

/** GET /health (or `path`); the parsed body, or undefined when it does not answer 200. */
export const health = async (port, path = '/health') => {
  try {
    const r = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(3000) })
    return r.ok ? await r.json() : undefined
  } catch {
    return undefined
  }
}

// -- statistics ----------------------------------------------------------------------------------

export const median = xs => {
  const s = xs.filter(x => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b)
  if (!s.length) return undefined
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}
