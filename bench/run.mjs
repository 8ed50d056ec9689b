#!/usr/bin/env node
// `npm run bench`: the agent against the plain serial bash baseline (bench/baseline.sh), side by
// side in one run, alternating, medians and ratios. Prints a table and writes bench/results.json.
// What each figure means and the figures of a run: bench/README.md.
//
//   node bench/run.mjs [--reps N] [--scale-reps N] [--keys-reps N] [--cold-reps N]
//                      [--cache-reps N] [--only core,cold,artifact,scale,keys,warm,cache]
//                      [--unbundled | --agent-entry FILE]
//                      [--no-build] [--keep]
// --agent-entry measures another build of the agent (e.g. an experimental bundle laid out like
// the release: FILE is its entry point, run with node); --keep leaves the sandbox in /tmp.
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { startImds } from './lib/imds.mjs'
import { measureWarm, warmRows } from './lib/warm.mjs'
import { cacheRows, measureCache } from './lib/cache.mjs'
import {
  createRepo, freePort, freshAgentRoot, freshBaselineRoot, health, HEALTH_PATH, killPm2, median, pm2Costs,
  readState, REGION, startMoto, timed, workDir,
} from './lib/harness.mjs'
import { REPO, setup } from './setup.mjs'

const { values: opt } = parseArgs({
  options: {
    reps: { type: 'string', default: '5' },
    'scale-reps': { type: 'string', default: '1' },
    'keys-reps': { type: 'string', default: '2' },
    'cold-reps': { type: 'string', default: '10' },
    'cache-reps': { type: 'string', default: '3' },
    only: { type: 'string', default: 'core,cold,artifact,scale,keys,warm,cache' },
    unbundled: { type: 'boolean', default: false },
    'agent-entry': { type: 'string' },
    'no-build': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
  },
})
const REPS = Number(opt.reps)
const SCALE_REPS = Number(opt['scale-reps'])
const KEYS_REPS = Number(opt['keys-reps'])
const COLD_REPS = Number(opt['cold-reps'])
const CACHE_REPS = Number(opt['cache-reps'])
const ONLY = new Set(opt.only.split(','))

const say = msg => process.stderr.write(`bench: ${msg}\n`)
const ms = x => (x === undefined ? '-' : x >= 10_000 ? `${(x / 1000).toFixed(1)} s` : x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${Math.round(x)} ms`)
const round = x => (x === undefined ? undefined : Math.round(x * 10) / 10)

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true' // the seeding clients; the agent silences its own
const started = Date.now()
setup({ build: !opt['no-build'] })
const ARTIFACT = join(REPO, '.cache/release', `bootstrap-agent-${JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).version}.tar.gz`)

const work = workDir('bench')
const cleanups = []
const cleanup = async () => {
  for (const f of cleanups.splice(0).reverse()) await Promise.resolve().then(f).catch(e => say(`cleanup: ${e.message}`))
  if (!opt.keep) rmSync(work, { recursive: true, force: true })
}
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => void cleanup().then(() => process.exit(130)))

// the agent as an instance runs it: the release artifact, extracted (or dist/ with --unbundled)
const release = join(work, 'release')
mkdirSync(release)
if (spawnSync('tar', ['-xzf', ARTIFACT, '-C', release]).status !== 0) throw new Error(`cannot extract ${ARTIFACT}: run npm run package`)
const BUNDLED = [join(release, 'bootstrap-agent/dist/agent.mjs')]
const UNBUNDLED = [join(REPO, 'dist/bin.js')]
const CUSTOM = opt['agent-entry'] ? [opt['agent-entry']] : undefined
// runs go through the artifact's launcher, as systemd's ExecStart does (bin/bootstrap-agent: sh,
// then `exec node <its flags> dist/agent.mjs`, same pid); the cold-start section times both
const LAUNCHER = join(release, 'bootstrap-agent/bin/bootstrap-agent')
const AGENT = CUSTOM ? [process.execPath, ...CUSTOM] : opt.unbundled ? [process.execPath, ...UNBUNDLED] : [LAUNCHER]

// moto and the IMDS server start inside measure(), so a failure at any point still cleans up
let moto
let imds

/** One service of a fixture (`kind`: the API app, or the admin panel): its repository, port, secret and parameters. */
const services = new Map()
const service = async (name, { secret, params, kind = 'api' } = {}) => {
  if (services.has(name)) return services.get(name)
  const port = await freePort()
  const repo = createRepo(join(work, 'git'), name, port, kind)
  await moto.putSecret(`stage/${name}`, secret ?? { API_KEY: `key-${randomBytes(12).toString('hex')}`, DATABASE_URL: 'postgres://app:pw@127.0.0.1:5432/app' })
  await moto.setParameters(`/stage/${name}/`, params ?? { 'db/password': `pw-${randomBytes(12).toString('hex')}` })
  const s = { name, port, repo, build: 1, kind }
  services.set(name, s)
  return s
}

let app

// both sides are killed at the end, whatever happened
const roots = new Set()
cleanups.push(() => roots.forEach(r => killPm2(...r.split('|'))))
const agentRoot = name => {
  const root = join(work, `agent-${name}`)
  roots.add(`${root}|agent`)
  return root
}
const baselineRoot = name => {
  const root = join(work, `baseline-${name}`)
  roots.add(`${root}|baseline`)
  return root
}

// -- the two sides -------------------------------------------------------------------------------

/** The agent, AWS mode, as systemd starts it: a minimal environment, AWS endpoints on the fixtures;
 * `env` adds settings (BOOTSTRAP_RELEASE_CACHE). */
const runAgent = async (root, { svc, reason = 'boot', cmd = AGENT, env: extra = {} } = {}) => {
  const env = {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    LANG: 'C.UTF-8',
    AWS_REGION: REGION,
    AWS_ACCESS_KEY_ID: 'bench',
    AWS_SECRET_ACCESS_KEY: 'bench',
    AWS_ENDPOINT_URL: moto.endpoint,
    AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.endpoint,
    ...(svc && svc.name !== 'app' ? { BOOTSTRAP_SERVICE: svc.name, BOOTSTRAP_REPOSITORY: svc.repo.url } : {}),
    ...extra,
  }
  const r = await timed(cmd[0], [...cmd.slice(1), 'run', '--reason', reason, '--root', root, '--json'], env, { sample: true })
  if (r.code !== 0) throw new Error(`agent run (${root}) exited ${r.code}:\n${r.stderr.slice(-3000)}\n${r.stdout.slice(-3000)}`)
  const state = readState(root)
  const phases = Object.fromEntries(state.phases.map(p => [p.name, p.durationMs]))
  const inPhases = state.phases.reduce((a, p) => a + p.durationMs, 0)
  // where the time outside the phases goes: before state.startedAt (node, the bundle, settings,
  // logger, lock), between the phases (state writes, logging), after state.finishedAt (exit)
  const overhead = {
    startup: Date.parse(state.startedAt) - r.spawnedAt,
    betweenPhases: state.durationMs - inPhases,
    exit: r.exitedAt - Date.parse(state.finishedAt),
  }
  // whether the agent already spawned PM2's daemon during install (then `start` holds no spawn)
  const pm2Overlapped = state.phases.some(p => p.name === 'start' && /PM2 made ready during install/.test(p.detail ?? ''))
  // the lifecycle hook's answer: when the `complete` phase's line was logged (its `time`)
  const line = r.stdout.split('\n').map(l => { try { return JSON.parse(l) } catch { return undefined } }).find(l => l?.phase === 'complete')
  const completed = line ? Date.parse(line.time) : undefined
  const toContinueMs = completed === undefined ? undefined : completed - r.spawnedAt
  return {
    ms: r.ms, peakRssMb: r.peakRssMb, cpuMs: r.cpuMs, phases, inPhases, outsidePhases: r.ms - inPhases, overhead, pm2Overlapped, details: state.phases.map(p => `${p.name}:${p.status}`).join(' '),
    toContinueMs, afterContinueMs: completed === undefined ? undefined : r.exitedAt - completed, releaseFrom: state.releaseFrom, cache: state.cache,
  }
}

/** The baseline script, as root, with the same endpoints; its step timings from BENCH_TIMINGS. */
const runBaseline = async (root, svc, { only } = {}) => {
  const timings = join(root, 'timings.txt')
  rmSync(timings, { force: true })
  const env = {
    PATH: `${join(REPO, 'node_modules/.bin')}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
    LANG: 'C.UTF-8',
    BASE_ROOT: root,
    IMDS_ENDPOINT: imds.endpoint,
    AWS_ENDPOINT: moto.endpoint,
    AWS_ACCESS_KEY_ID: 'bench',
    AWS_SECRET_ACCESS_KEY: 'bench',
    PORT: String(svc.basePort),
    BENCH_TIMINGS: timings,
    ...(svc.kind === 'admin' ? { STATIC_DIR: 'dist', HEALTH_PATH: HEALTH_PATH.admin } : {}),
    ...(svc.name !== 'app' ? { SERVICE: svc.name, REPOSITORY: svc.repo.url } : {}),
    ...(only ? { BASELINE_ONLY: only } : {}),
  }
  const r = await timed('bash', [join(REPO, 'bench/baseline.sh')], env)
  if (r.code !== 0) throw new Error(`baseline (${root}) exited ${r.code}:\n${r.stderr.slice(-3000)}`)
  const steps = Object.fromEntries(readFileSync(timings, 'utf8').trim().split('\n').map(l => l.split(' ')).map(([k, v]) => [k, Number(v)]))
  return { ms: r.ms, steps }
}

const expectBuild = async (port, build, who, kind = 'api') => {
  const h = await health(port, HEALTH_PATH[kind])
  if (h?.build !== build) throw new Error(`${who}: expected build ${build} on port ${port}, got ${JSON.stringify(h)}`)
}

const results = {
  machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version, loadavgAtStart: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ') },
  options: { reps: REPS, scaleReps: SCALE_REPS, keysReps: KEYS_REPS, coldReps: COLD_REPS, cacheReps: CACHE_REPS, agent: CUSTOM ? opt['agent-entry'] : opt.unbundled ? 'dist/bin.js (unbundled)' : 'release artifact (bundled)' },
}

/** Wall time and load average of each section: other processes on the machine show up here. */
const load = () => readFileSync('/proc/loadavg', 'utf8').split(' ')[0]
const sections = {}
const section = async (name, fn) => {
  if (!ONLY.has(name)) return
  const t0 = Date.now()
  const before = load()
  await fn()
  sections[name] = { seconds: Math.round((Date.now() - t0) / 1000), load1: `${before} -> ${load()}` }
}
results.sections = sections

/** Every measurement, in order; the sandbox, PM2 daemons, moto and IMDS are cleaned up whatever happens. */
const measure = async () => {
  moto = await startMoto()
  cleanups.push(() => moto.stop())
  app = await service('app')
  imds = await startImds({ instanceId: 'i-0bench000000000001', region: REGION, tags: { Service: 'app', Environment: 'stage', Repository: app.repo.url } })
  cleanups.push(() => imds.stop())

  // -- 1-4, 6: first boot, new commit, no change; overhead; RSS ------------------------------------

  await section('core', async () => {
    app.basePort = await freePort()
    const runs = { firstBoot: { agent: [], baseline: [] }, newCommit: { agent: [], baseline: [] }, noChange: { agent: [], baseline: [] } }
    const pm2 = []
    for (let rep = 0; rep < REPS; rep++) {
      const aRoot = agentRoot('app')
      const bRoot = baselineRoot('app')
      killPm2(aRoot, 'agent')
      killPm2(bRoot, 'baseline')
      freshAgentRoot(aRoot)
      freshBaselineRoot(bRoot)
      // alternate who goes first, so drift (page cache, a busy neighbour) hits both sides alike
      const order = rep % 2 === 0 ? ['agent', 'baseline'] : ['baseline', 'agent']
      const once = async (kind, reason) => {
        for (const side of order) {
          const r = side === 'agent' ? await runAgent(aRoot, { svc: app, reason }) : await runBaseline(bRoot, app)
          await expectBuild(side === 'agent' ? app.port : app.basePort, app.build, `${kind} ${side}`)
          runs[kind][side].push(r)
        }
      }
      await once('firstBoot', 'boot')
      app.repo.commit(++app.build)
      await once('newCommit', 'ssm')
      await once('noChange', 'ssm')
      pm2.push(pm2Costs(work))
      const last = k => `agent ${ms(runs[k].agent.at(-1).ms)} / baseline ${ms(runs[k].baseline.at(-1).ms)}`
      say(`rep ${rep + 1}/${REPS}: first boot ${last('firstBoot')}; new commit ${last('newCommit')}; no change ${last('noChange')}`)
    }
    killPm2(agentRoot('app'), 'agent')
    killPm2(baselineRoot('app'), 'baseline')

    const summary = {}
    for (const [kind, r] of Object.entries(runs)) {
      const phaseNames = Object.keys(r.agent[0].phases)
      const stepNames = Object.keys(r.baseline[0].steps)
      summary[kind] = {
        agentMs: median(r.agent.map(x => x.ms)),
        baselineMs: median(r.baseline.map(x => x.ms)),
        ratio: median(r.agent.map(x => x.ms)) / median(r.baseline.map(x => x.ms)),
        agentPhasesMs: Object.fromEntries(phaseNames.map(n => [n, median(r.agent.map(x => x.phases[n]))])),
        agentInPhasesMs: median(r.agent.map(x => x.inPhases)),
        agentOutsidePhasesMs: median(r.agent.map(x => x.outsidePhases)),
        agentOverheadMs: Object.fromEntries(['startup', 'betweenPhases', 'exit'].map(k => [k, median(r.agent.map(x => x.overhead[k]))])),
        agentOwnCpuMs: median(r.agent.map(x => x.cpuMs)),
        agentPeakRssMb: median(r.agent.map(x => x.peakRssMb)),
        agentPeakRssMaxMb: Math.max(...r.agent.map(x => x.peakRssMb ?? 0)),
        agentPhaseStatus: r.agent[0].details,
        baselineStepsMs: Object.fromEntries(stepNames.map(n => [n, median(r.baseline.map(x => x.steps[n]))])),
        samples: { agentMs: r.agent.map(x => Math.round(x.ms)), baselineMs: r.baseline.map(x => Math.round(x.ms)) },
      }
    }
    // Critical path of the first boot's external steps, if everything that can overlap did:
    // secrets with the clone, the PM2 daemon's spawn with npm ci. Per rep, then the median.
    const daemonMs = median(pm2.map(x => x.spawnMs))
    const fb = runs.firstBoot
    // what the agent already overlaps is not in its phase times (secrets read during fetch: the
    // secrets phase is what was left to wait for; the daemon spawned during install: not in start)
    const agentCp = fb.agent.map(x => {
      const p = x.phases
      return x.inPhases - Math.min(p.fetch ?? 0, p.secrets ?? 0) - (x.pm2Overlapped ? 0 : Math.min(p.install ?? 0, daemonMs))
    })
    const baselineCp = fb.baseline.map(x => {
      const s = x.steps
      return s.tags + Math.max(s.secrets, s.clone) + Math.max(s.npm_ci, daemonMs) + Math.max(0, s.pm2 - daemonMs) + s.health
    })
    summary.pm2 = { daemonSpawnMs: daemonMs, cliCallMs: median(pm2.map(x => x.jlistMs)) }
    summary.firstBoot.agentCriticalPathMs = median(agentCp)
    summary.firstBoot.agentVsCriticalPath = median(fb.agent.map(x => x.ms)) / median(agentCp)
    summary.firstBoot.baselineCriticalPathMs = median(baselineCp)
    results.core = summary
  })

  // -- 5: CLI cold start, bundled vs unbundled --------------------------------------------------------

  await section('cold', async () => {
    const secretsFile = join(work, 'plan-secrets.json')
    writeFileSync(secretsFile, JSON.stringify({ secrets: { 'stage/app': { API_KEY: 'x' } }, parameters: {} }), { mode: 0o600 })
    const planArgs = ['plan', '--local', '--root', join(work, 'plan-root'), '--tag', 'Service=app', '--tag', 'Environment=stage', '--tag', `Repository=${app.repo.url}`, '--secrets-file', secretsFile]
    const env = { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8', HOME: work }
    const variants = {
      bundled: [process.execPath, BUNDLED],
      unbundled: [process.execPath, UNBUNDLED],
      launcher: [LAUNCHER, []],
      ...(CUSTOM ? { custom: [process.execPath, CUSTOM] } : {}),
    }
    const cold = {}
    for (const [what, args, reps] of [['--version', ['--version'], COLD_REPS], ['plan --local', planArgs, Math.max(3, Math.round(COLD_REPS / 2))]]) {
      const samples = Object.fromEntries(Object.keys(variants).map(v => [v, []]))
      for (const [file, pre] of Object.values(variants)) await timed(file, [...pre, ...args], env) // warm the page cache
      for (let i = 0; i < reps; i++) {
        const names = Object.keys(variants)
        for (const v of i % 2 ? names.reverse() : names) {
          const [file, pre] = variants[v]
          const r = await timed(file, [...pre, ...args], env, { sample: true })
          if (r.code !== 0) throw new Error(`${v} ${what} exited ${r.code}: ${r.stderr}`)
          samples[v].push(r)
        }
      }
      cold[what] = Object.fromEntries(Object.entries(samples).map(([v, s]) => [v, { ms: median(s.map(x => x.ms)), peakRssMb: median(s.map(x => x.peakRssMb)) }]))
      cold[what].bundledVsUnbundled = cold[what].bundled.ms / cold[what].unbundled.ms
    }
    const bare = []
    for (let i = 0; i < COLD_REPS; i++) bare.push((await timed(process.execPath, ['-e', '0'], env)).ms)
    cold.nodeBareMs = median(bare)
    results.coldStart = cold
    say(`cold start: --version bundled ${ms(cold['--version'].bundled.ms)}, unbundled ${ms(cold['--version'].unbundled.ms)} (node -e 0: ${ms(cold.nodeBareMs)})`)
  })

  // -- 8: the release artifact: size, offline install (sha256 check, extract, --version) -------------

  await section('artifact', async () => {
    const reps = Math.max(3, Math.round(COLD_REPS / 2))
    const parts = { verify: [], extract: [], version: [], total: [] }
    let unpacked = 0
    for (let i = 0; i < reps; i++) {
      const dest = join(work, `install-${i}`)
      mkdirSync(dest)
      const t0 = performance.now()
      const v = await timed('sh', ['-c', `cd "${join(REPO, '.cache/release')}" && sha256sum -c --quiet "${ARTIFACT}.sha256"`], { PATH: '/usr/bin:/bin' })
      const t1 = performance.now()
      const x = await timed('tar', ['-xzf', ARTIFACT, '-C', dest], { PATH: '/usr/bin:/bin' })
      const t2 = performance.now()
      const ver = await timed(join(dest, 'bootstrap-agent/bin/bootstrap-agent'), ['--version'], { PATH: '/usr/bin:/bin' })
      const t3 = performance.now()
      if (v.code || x.code || ver.code) throw new Error(`offline install failed: ${v.stderr}${x.stderr}${ver.stderr}`)
      parts.verify.push(t1 - t0)
      parts.extract.push(t2 - t1)
      parts.version.push(t3 - t2)
      parts.total.push(t3 - t0)
      unpacked = Number(spawnSync('du', ['-sb', dest], { encoding: 'utf8' }).stdout.split('\t')[0])
      rmSync(dest, { recursive: true, force: true })
    }
    const files = spawnSync('tar', ['-tzf', ARTIFACT], { encoding: 'utf8', maxBuffer: 1 << 28 }).stdout.trim().split('\n').length
    results.artifact = {
      file: ARTIFACT.slice(REPO.length + 1),
      bytes: statSync(ARTIFACT).size,
      unpackedBytes: unpacked,
      entries: files,
      // the entry and its chunks (scripts/package.mjs splits the bundle at its dynamic imports)
      bundleBytes: readdirSync(join(release, 'bootstrap-agent/dist')).filter(f => f.endsWith('.mjs')).reduce((n, f) => n + statSync(join(release, 'bootstrap-agent/dist', f)).size, 0),
      offlineInstallMs: Object.fromEntries(Object.entries(parts).map(([k, v]) => [k, median(v)])),
    }
    say(`artifact: ${(results.artifact.bytes / 1048576).toFixed(2)} MiB, offline install ${ms(results.artifact.offlineInstallMs.total)}`)
  })

  // -- 7a: scale, 1 / 4 / 8 services on one instance ----------------------------------------------------

  await section('scale', async () => {
    const sizes = [1, 4, 8]
    const svcs = []
    for (let i = 1; i <= Math.max(...sizes); i++) {
      const s = await service(`svc${i}`)
      s.basePort = await freePort()
      svcs.push(s)
    }
    const fresh = (side, n) => svcs.slice(0, n).map(s => {
      const root = side === 'agent' ? agentRoot(s.name) : baselineRoot(s.name)
      killPm2(root, side)
      return side === 'agent' ? freshAgentRoot(root) : freshBaselineRoot(root)
    })
    const killAll = () => svcs.forEach(s => { killPm2(agentRoot(s.name), 'agent'); killPm2(baselineRoot(s.name), 'baseline') })
    const samples = Object.fromEntries(sizes.map(n => [n, { agentSequential: [], agentParallel: [], baseline: [] }]))
    for (let rep = 0; rep < SCALE_REPS; rep++) {
      for (const n of sizes) {
        // the target is the agent's 8-vs-1 ratio; the baseline is timed for 1 and 8 (for 4 it only
      // adds minutes); 8 agents at once is informational (no multi-service mode exists)
      const modes = ['agentSequential', ...(n === 4 ? [] : ['baseline']), ...(n === 8 ? ['agentParallel'] : [])]
        for (const mode of rep % 2 ? modes.reverse() : modes) {
          const dirs = fresh(mode === 'baseline' ? 'baseline' : 'agent', n)
          const t0 = performance.now()
          if (mode === 'agentParallel') await Promise.all(dirs.map((root, i) => runAgent(root, { svc: svcs[i] })))
          else for (const [i, root] of dirs.entries()) await (mode === 'baseline' ? runBaseline(root, svcs[i]) : runAgent(root, { svc: svcs[i] }))
          samples[n][mode].push(performance.now() - t0)
          for (const s of svcs.slice(0, n)) await expectBuild(mode === 'baseline' ? s.basePort : s.port, s.build, `scale ${n} ${mode}`)
          killAll()
        }
        say(`scale ${n}: agent sequential ${ms(samples[n].agentSequential.at(-1))}${n === 4 ? '' : `, baseline ${ms(samples[n].baseline.at(-1))}`}${n === 8 ? `, 8 agents in parallel ${ms(samples[n].agentParallel.at(-1))}` : ''}`)
      }
    }
    const med = Object.fromEntries(sizes.map(n => [n, Object.fromEntries(Object.entries(samples[n]).map(([k, v]) => [k, median(v)]))]))
    results.scaleServices = {
      note: 'the agent has no multi-service mode: N services = N agent runs, each with its own root (own PM2 daemon, own port), one after the other (agentSequential) or all at once (agentParallel: what a multi-service mode could reach on this machine)',
      medianMs: med,
      eightVsOne: { agentSequential: med[8].agentSequential / med[1].agentSequential, agentParallel: med[8].agentParallel / med[1].agentSequential, baseline: med[8].baseline / med[1].baseline },
    }
  })

  // -- 7b: scale, 10 / 100 / 1,000 secret keys and parameters --------------------------------------

  await section('keys', async () => {
    const svc = await service('keys')
    svc.basePort = await freePort()
    const aRoot = freshAgentRoot(agentRoot('keys'))
    const bRoot = freshBaselineRoot(baselineRoot('keys'))
    const API_KEY = `key-${randomBytes(12).toString('hex')}`
    const val = i => `v${i}-${randomBytes(16).toString('hex')}`
    const make = n => Object.fromEntries(Array.from({ length: n }, (_, i) => [`K${String(i).padStart(4, '0')}`, val(i)]))
    const cases = [['base', 0], ['10', 10], ['100', 100], ['1000', 1000]]
    const out = { secretKeys: {}, parameters: {} }
    for (const kind of ['secretKeys', 'parameters']) {
      for (const [label, n] of cases) {
        // base: API_KEY only; secretKeys: n more keys in the secret; parameters: n parameters
        await moto.putSecret('stage/keys', { API_KEY, ...(kind === 'secretKeys' ? make(n) : {}) })
        const params = kind === 'parameters' ? make(n) : {}
        await moto.setParameters('/stage/keys/', Object.fromEntries(Object.entries(params).map(([k, v]) => [k.toLowerCase(), v])))
        await runAgent(aRoot, { svc, reason: 'ssm' }) // applies the new secrets (reload); not timed
        const agent = []
        const baseline = []
        for (let i = 0; i < KEYS_REPS; i++) {
          agent.push(await runAgent(aRoot, { svc, reason: 'ssm' }))
          baseline.push(await runBaseline(bRoot, svc, { only: 'secrets' }))
        }
        out[kind][label] = {
          keys: n,
          agentNoChangeMs: median(agent.map(x => x.ms)),
          agentSecretsPhaseMs: median(agent.map(x => x.phases.secrets)),
          agentPeakRssMb: median(agent.map(x => x.peakRssMb)),
          baselineSecretsStepMs: median(baseline.map(x => x.steps.secrets)),
        }
        say(`keys ${kind} ${label}: agent no-change ${ms(out[kind][label].agentNoChangeMs)} (secrets ${ms(out[kind][label].agentSecretsPhaseMs)}), baseline secrets step ${ms(out[kind][label].baselineSecretsStepMs)}`)
      }
      out[kind].addedBy1000Ms = out[kind]['1000'].agentNoChangeMs - out[kind].base.agentNoChangeMs
    out[kind].secretsPhaseAddedBy1000Ms = out[kind]['1000'].agentSecretsPhaseMs - out[kind].base.agentSecretsPhaseMs
    out[kind].baselineAddedBy1000Ms = out[kind]['1000'].baselineSecretsStepMs - out[kind].base.baselineSecretsStepMs
    }
    killPm2(aRoot, 'agent')
    results.scaleKeys = out
  })
}

// -- W: warm pool, warmed start vs cold boot (bench/lib/warm.mjs) ---------------------------------------

const measureWarmSection = () => section('warm', async () => {
  results.warm = await measureWarm({ reps: REPS, moto, imds, app, runAgent, agentRoot, freshAgentRoot, killPm2, expectBuild, say, ms })
})

// -- C: the release cache, both fixtures (bench/lib/cache.mjs) -------------------------------------------

const measureCacheSection = () => section('cache', async () => {
  const admin = await service('admin', { kind: 'admin' })
  admin.basePort = await freePort()
  app.basePort ??= await freePort()
  results.cache = await measureCache({
    reps: CACHE_REPS, moto, work, fixtures: { api: app, admin }, runAgent, runBaseline, agentRoot, baselineRoot, freshAgentRoot, freshBaselineRoot, killPm2, expectBuild, say, ms,
  })
})

try {
  await measure()
  await measureWarmSection()
  await measureCacheSection()
} finally {
  results.totalSeconds = Math.round((Date.now() - started) / 1000)
  results.machine.loadavgAtEnd = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
  await cleanup()
}


// -- report -------------------------------------------------------------------------------------------

const rows = []
const row = (metric, agent, baseline, ratio, target, met) => rows.push({ metric, agent, baseline, ratio, target, met })
const yes = ok => (ok === undefined ? '' : ok ? 'met' : 'NOT met')
const x = r => (r === undefined ? '' : `${r.toFixed(2)}x`)
const c = results.core
if (c) {
  row('1 first boot', ms(c.firstBoot.agentMs), ms(c.firstBoot.baselineMs), x(c.firstBoot.ratio), '<= 0.9x', yes(c.firstBoot.ratio <= 0.9))
  row('1 first boot vs critical path', ms(c.firstBoot.agentMs), `CP ${ms(c.firstBoot.agentCriticalPathMs)}`, x(c.firstBoot.agentVsCriticalPath), '<= 1.05x CP', yes(c.firstBoot.agentVsCriticalPath <= 1.05))
  row('1 baseline steps overlapped (its CP)', '', ms(c.firstBoot.baselineCriticalPathMs), '', '', '')
  row('2 new commit, same lockfile', ms(c.newCommit.agentMs), ms(c.newCommit.baselineMs), x(c.newCommit.ratio), '<= 0.2x', yes(c.newCommit.ratio <= 0.2))
  row('3 no change', ms(c.noChange.agentMs), ms(c.noChange.baselineMs), x(c.noChange.ratio), '<= 0.1x, < 2 s', yes(c.noChange.ratio <= 0.1 && c.noChange.agentMs < 2000))
  for (const k of ['firstBoot', 'newCommit', 'noChange']) {
    row(`4 overhead outside phases (${k})`, ms(c[k].agentOutsidePhasesMs), '', '', '<= 300 ms', yes(c[k].agentOutsidePhasesMs <= 300))
  }
  row('4 agent own CPU (first boot)', ms(c.firstBoot.agentOwnCpuMs), '', '', '', '')
  const rss = Math.max(c.firstBoot.agentPeakRssMaxMb, c.newCommit.agentPeakRssMaxMb, c.noChange.agentPeakRssMaxMb)
  row('6 peak RSS of the agent (max of runs)', `${rss.toFixed(1)} MB`, '', '', '<= 100 MB', yes(rss <= 100))
}
const cs = results.coldStart
if (cs) {
  const v = cs['--version']
  row('5 --version bundled', ms(v.bundled.ms), `unbundled ${ms(v.unbundled.ms)}`, x(v.bundledVsUnbundled), '<= 150 ms', yes(v.bundled.ms <= 150))
  row('5 --version via bin/ launcher', ms(v.launcher.ms), `node -e 0: ${ms(cs.nodeBareMs)}`, '', '', '')
  const p = cs['plan --local']
  row('5 plan --local bundled', ms(p.bundled.ms), `unbundled ${ms(p.unbundled.ms)}`, x(p.bundledVsUnbundled), '', '')
}
const ss = results.scaleServices
if (ss) {
  for (const n of [1, 4, 8]) {
    const b = ss.medianMs[n].baseline
    row(`7 ${n} service(s), sequential`, ms(ss.medianMs[n].agentSequential), b === undefined ? '(not run)' : ms(b), b === undefined ? '' : x(ss.medianMs[n].agentSequential / b), '', '')
  }
  row('7 8 services / 1, sequential', x(ss.eightVsOne.agentSequential), x(ss.eightVsOne.baseline), '', '<= 2x', yes(ss.eightVsOne.agentSequential <= 2))
  row('7 8 services / 1, 8 agents in parallel', x(ss.eightVsOne.agentParallel), '', '', '(not a mode)', '')
}
const sk = results.scaleKeys
if (sk) {
  for (const kind of ['secretKeys', 'parameters']) {
    for (const l of ['10', '100', '1000']) row(`7 ${l} ${kind === 'secretKeys' ? 'keys in the secret' : 'parameters'} (no-change run / baseline secrets step)`, ms(sk[kind][l].agentNoChangeMs), ms(sk[kind][l].baselineSecretsStepMs), '', '', '')
    row(`7 1,000 ${kind === 'secretKeys' ? 'secret keys' : 'parameters'} add (run; secrets phase)`, `${ms(sk[kind].addedBy1000Ms)}; ${ms(sk[kind].secretsPhaseAddedBy1000Ms)}`, ms(sk[kind].baselineAddedBy1000Ms), '', '<= 1 s', yes(sk[kind].addedBy1000Ms <= 1000))
  }
}
const a = results.artifact
if (a) {
  row('8 artifact size', `${(a.bytes / 1048576).toFixed(2)} MiB`, `unpacked ${(a.unpackedBytes / 1048576).toFixed(1)} MiB`, '', '', '')
  row('8 offline install (sha256 + extract + --version)', ms(a.offlineInstallMs.total), '', '', '', '')
}
if (results.warm) rows.push(...warmRows(results.warm, { ms, x }))
if (results.cache) rows.push(...cacheRows(results.cache, { ms, x, yes }))
results.table = rows

writeFileSync(join(REPO, 'bench/results.json'), `${JSON.stringify(results, (k, v) => (typeof v === 'number' && !Number.isInteger(v) ? round(v) : v), 2)}\n`)

const cols = ['metric', 'agent', 'baseline', 'ratio', 'target', 'met']
const width = cols.map(k => Math.max(k.length, ...rows.map(r => String(r[k]).length)))
const line = r => `| ${cols.map((k, i) => String(r[k]).padEnd(width[i])).join(' | ')} |`
console.log(line(Object.fromEntries(cols.map(k => [k, k]))))
console.log(`|${width.map(w => '-'.repeat(w + 2)).join('|')}|`)
for (const r of rows) console.log(line(r))
console.log(`\n${cpus().length} cores, load ${results.machine.loadavgAtStart} -> ${results.machine.loadavgAtEnd}; ${results.totalSeconds} s (${Object.entries(sections).map(([k, v]) => `${k} ${v.seconds} s, load ${v.load1}`).join('; ')}); bench/results.json written`)
