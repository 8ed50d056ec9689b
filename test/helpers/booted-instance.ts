/**
 * The boot tier's instance (test/boot/): one EC2 instance of an Auto Scaling group, booted for
 * real (nspawn.ts: systemd as PID 1, cloud-init) with what EC2 and AWS would give it, every
 * server on 127.0.0.1 and stopped in teardown:
 *
 * - user-data exactly as a launch template carries it: rendered by the CLI (`render-user-data
 *   --template bootstrap`, node-install=ubuntu), handed to cloud-init as a NoCloud seed
 *   (/var/lib/cloud/seed/nocloud/{user-data,meta-data}, instance-id = the group member's id);
 * - the release artifact (`npm run package`) and the official-layout Node 22 tarball
 *   (scripts/boot-setup.mjs) from a file server, as from S3 and nodejs.org;
 * - instance metadata from our IMDSv2 server (tags Service, Environment, Repository); Secrets
 *   Manager, Parameter Store and Auto Scaling from moto behind the lifecycle proxy (aws-world.ts);
 * - a private repository over smart HTTP with basic auth, its token in Secrets Manager.
 *
 * Only two things are test-only, in a systemd drop-in for both agent units (they are no render
 * parameters, and on EC2 they need no configuration): the IMDS endpoint and dummy credentials
 * (the instance profile's come from IMDS, which this server does not serve).
 *
 * The service (`app`) answers with fingerprints of its secrets, its pid and uid; it closes its
 * server on SIGINT (PM2's graceful stop), and its preStop leaves a marker.
 */
import type { Test } from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { CreateSecretCommand } from '@aws-sdk/client-secrets-manager'
import { PutParameterCommand } from '@aws-sdk/client-ssm'
import { startAwsWorld, type AwsWorld, type Group } from './aws-world.js'
import { startFileServer } from './file-server.js'
import { createFixtureRepo, type FixtureRepo } from './fixture-repo.js'
import { startGitHttpServer } from './git-http-server.js'
import { findLeaks } from './leak-scan.js'
import type { ImdsServer } from './imds-server.js'
import { createContainer, bootPrerequisites, type CgroupLayout, type Container } from './nspawn.js'
import { sampleCmdlines } from './proc-sampler.js'
import { buildRelease, runClean } from './release.js'
import { appFiles, freePort, removeSandbox, runCli, sandboxDir } from './sandbox.js'

export const SERVICE = 'app'
export const LAUNCH_HOOK = 'launching'
export const TERM_HOOK = 'terminating'
/** where things are on the instance (README "On disk") */
export const ON_INSTANCE = {
  userDataLog: '/var/log/bootstrap-agent/user-data.log',
  envFile: `/etc/bootstrap-agent/env/${SERVICE}.env`,
  stateFile: '/var/lib/bootstrap-agent/state.json',
  watchFile: '/var/lib/bootstrap-agent/watch.json',
  killSwitch: '/etc/bootstrap-agent/disabled',
  current: `/srv/${SERVICE}/current`,
  appLogs: `/srv/${SERVICE}/logs`,
  /** written by the service's preStop (the service user's home is writable for it) */
  preStopMarker: '/var/lib/bootstrap-agent/home/pre-stop.json',
  journal: '/var/log/journal',
}

const SERVER = (greeting: string) => `
const http = require('node:http')
const { createHash } = require('node:crypto')
const { realpathSync } = require('node:fs')
const { basename } = require('node:path')
const fp = v => v === undefined ? null : createHash('sha256').update(v).digest('hex')
const server = http.createServer((req, res) => {
  res.setHeader('content-type', 'application/json')
  res.end(JSON.stringify({ greeting: ${JSON.stringify(greeting)}, release: basename(realpathSync(__dirname)), apiKey: fp(process.env.API_KEY), dbPassword: fp(process.env.DB_PASSWORD), pid: process.pid, uid: process.getuid() }))
}).listen(Number(process.env.PORT), '127.0.0.1', () => console.log('listening'))
// PM2 stops an app with SIGINT: finish what is in flight, then exit (Node's default would exit at once)
process.on('SIGINT', () => {
  console.log('SIGINT: closing the server')
  server.close(() => { console.log('server closed: exiting 0'); process.exit(0) })
})
`
const PRE_STOP = `
const { createHash } = require('node:crypto')
const fp = v => v === undefined ? null : createHash('sha256').update(v).digest('hex')
require('node:fs').writeFileSync(process.env.PRE_STOP_MARKER, JSON.stringify({ uid: process.getuid(), cwd: process.cwd(), apiKey: fp(process.env.API_KEY) }))
`

export interface Health {
  greeting: string
  release: string
  apiKey: string | null
  dbPassword: string | null
  pid: number
  uid: number
}

export interface BootTimings {
  /** container start -> the user-data log's OK line */
  userDataMs: number
  /** container start -> CONTINUE on the launching hook */
  continueMs: number
}

export interface BootedInstance {
  container: Container
  world: AwsWorld
  imds: ImdsServer
  group: Group
  repo: FixtureRepo
  /** the service's URL, as the load balancer would ask it */
  url: string
  secrets: { apiKey: string; dbPassword: string; gitToken: string }
  /** the distinctive strings the leak scans look for */
  secretValues: string[]
  fp(v: string): string
  /** the user-data as the launch template carries it */
  userData: string
  /** pushes a commit to the branch whose service exits at start (its health check fails) */
  commitBroken(): Promise<string>
  /** the launching action is made active; boots; resolves once the boot run finished */
  firstBoot(): Promise<BootTimings>
  /** GET the service from the host; undefined when it does not answer */
  health(): Promise<Health | undefined>
  /** the unit's systemctl properties */
  unit(name: string, props?: string[]): Promise<Record<string, string>>
  /** waits until a oneshot unit has finished (active or failed) */
  unitSettled(name: string): Promise<Record<string, string>>
  /** waits until the boot's jobs are done (`systemctl is-system-running`: running or degraded) */
  bootSettled(): Promise<string>
  /** a file inside the instance, read from the host ('' when missing) */
  read(path: string): string
  /** the command lines of every process seen during the first boot (host-wide /proc) */
  cmdlines: string[]
  /** every place a secret value was found on the stopped instance's disk (the env file aside), in
   * its journal read through journalctl (compressed entries included), in its console, in the
   * command lines: [] means no leak */
  leaks(): Promise<string[]>
}

/** Polls until `probe` gives a value; the bound only turns a hang into a failure that says what it waited for. */
export const waitFor = async <T>(what: string, probe: () => Promise<T | undefined> | T | undefined, explain: () => Promise<string> | string = () => '', boundMs = 240_000): Promise<T> => {
  for (const end = Date.now() + boundMs; ; await sleep(200)) {
    const v = await probe()
    if (v !== undefined) return v
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}\n${await explain()}`)
  }
}

export const bootInstance = async (t: Test, o: { name: string; layout: CgroupLayout }): Promise<BootedInstance> => {
  const prereq = bootPrerequisites()
  const release = buildRelease()
  const dir = sandboxDir(`boot-${o.name}`)
  const container = createContainer({ image: prereq.rootfs, dir: join(dir, 'container'), name: o.name, layout: o.layout })
  // the container halts and its overlay is unmounted before its directory goes
  t.teardown(async () => {
    await container.destroy()
    removeSandbox(dir)
  })

  const world = await startAwsWorld(t)
  const fp = (v: string) => createHash('sha256').update(v).digest('hex')
  const mark = () => randomBytes(16).toString('hex')
  const apiKeyMark = `key-${mark()}`
  const secrets = {
    // every character an env file could mangle
    apiKey: `${apiKeyMark}\n"quoted" $HOME #hash = back\\slash 'single' \`tick\` ünïcode`,
    dbPassword: `db-${mark()}`,
    gitToken: `tok-${mark()}`,
  }
  await world.sm.send(new CreateSecretCommand({ Name: `stage/${SERVICE}`, SecretString: JSON.stringify({ API_KEY: secrets.apiKey }) }))
  await world.sm.send(new CreateSecretCommand({ Name: `git/${SERVICE}`, SecretString: JSON.stringify({ username: 'deploy', token: secrets.gitToken }) }))
  await world.ssm.send(new PutParameterCommand({ Name: `/stage/${SERVICE}/db/password`, Value: secrets.dbPassword, Type: 'SecureString' }))
  const group = await world.createGroup({
    prefix: o.name,
    hooks: [{ name: LAUNCH_HOOK }, { name: TERM_HOOK, transition: 'autoscaling:EC2_INSTANCE_TERMINATING', defaultResult: 'CONTINUE' }],
  })

  const port = await freePort()
  const manifest = (healthTimeoutSeconds: number) => ({
    version: 1,
    services: {
      [SERVICE]: {
        start: { script: 'server.js' },
        env: { PORT: String(port), PRE_STOP_MARKER: ON_INSTANCE.preStopMarker },
        health: { url: `http://127.0.0.1:${port}/health`, timeoutSeconds: healthTimeoutSeconds },
        requiredEnv: ['API_KEY', 'DB_PASSWORD'],
        killTimeoutMs: 8000,
        preStop: ['node', 'pre-stop.js'],
      },
    },
  })
  const repo = await createFixtureRepo({
    root: join(dir, 'git'),
    name: SERVICE,
    branches: { stage: appFiles({ port, greeting: 'stage', manifest: manifest(30), extra: { 'server.js': SERVER('stage'), 'pre-stop.js': PRE_STOP } }) },
  })
  const git = await startGitHttpServer({ projectRoot: join(dir, 'git'), username: 'deploy', password: secrets.gitToken })
  t.teardown(() => git.stop())
  const imds = await world.startImds({
    instanceId: group.instanceId,
    tags: { Service: SERVICE, Environment: 'stage', Repository: git.url(`${SERVICE}.git`) },
    lifecycleState: 'InService',
  })
  const artifactPath = `/releases/${release.fileName}`
  const nodePath = `/dist/v${prereq.nodeVersion}/${prereq.nodeTarballName}`
  const files = await startFileServer({ [artifactPath]: release.tarball, [nodePath]: prereq.nodeTarball })
  t.teardown(() => files.stop())

  // the launch template's user-data, rendered by the CLI as an operator would
  const userDataFile = join(dir, 'user-data.sh')
  const params = {
    'artifact-url': files.url(artifactPath),
    'artifact-sha256': release.sha256,
    region: 'us-east-1',
    'node-install': 'ubuntu',
    'node-url': files.url(nodePath),
    'node-sha256': prereq.nodeSha256,
    AWS_ENDPOINT_URL: world.proxy.endpoint,
    BOOTSTRAP_GIT_CREDENTIAL_SECRET: `git/${SERVICE}`,
    BOOTSTRAP_WATCH_INTERVAL: '2',
  }
  const rendered = await runCli(['render-user-data', '--template', 'bootstrap', '--out', userDataFile, ...Object.entries(params).flatMap(([k, v]) => ['--param', `${k}=${v}`])])
  if (rendered.code !== 0) throw new Error(`render-user-data failed (exit ${rendered.code}): ${rendered.stderr}`)
  const userData = readFileSync(userDataFile, 'utf8')

  const put = (path: string, text: string) => {
    mkdirSync(dirname(container.path(path)), { recursive: true })
    writeFileSync(container.path(path), text)
  }
  put('/var/lib/cloud/seed/nocloud/user-data', userData)
  put('/var/lib/cloud/seed/nocloud/meta-data', `instance-id: ${group.instanceId}\nlocal-hostname: ${o.name}\n`)
  const dropIn = `# test only (test/helpers/booted-instance.ts): what EC2 provides without configuration
[Service]
Environment=AWS_EC2_METADATA_SERVICE_ENDPOINT=${imds.endpoint}
Environment=AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
`
  for (const unit of ['bootstrap-agent.service', 'bootstrap-agent-watch.service']) put(`/etc/systemd/system/${unit}.d/90-test-endpoints.conf`, dropIn)

  const read = (path: string) => (existsSync(container.path(path)) ? readFileSync(container.path(path), 'utf8') : '')
  const url = `http://127.0.0.1:${port}/health`
  const health = async (): Promise<Health | undefined> => {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(5000) })
      return res.ok ? ((await res.json()) as Health) : undefined
    } catch {
      return undefined
    }
  }
  const unit = (name: string, props = ['ActiveState', 'SubState', 'Result', 'ExecMainStatus', 'ConditionResult', 'MainPID']) => container.show(name, props)
  const journalOf = async (name: string) => (await container.exec(['journalctl', '--no-pager', '-o', 'cat', '-u', name])).stdout.slice(-6000)
  const unitSettled = (name: string) =>
    waitFor(`${name} to finish`, async () => {
      const u = await unit(name)
      return u['ActiveState'] === 'active' || u['ActiveState'] === 'failed' ? u : undefined
    }, async () => `${JSON.stringify(await unit(name))}\n${await journalOf(name)}`)

  const bootSettled = () =>
    waitFor('the boot to finish', async () => {
      const state = (await container.exec(['systemctl', 'is-system-running'])).stdout.trim()
      return state === 'running' || state === 'degraded' ? state : undefined
    }, async () => (await container.exec(['systemctl', 'list-jobs', '--no-pager'])).stdout)

  const cmdlines: string[] = []
  const inst: BootedInstance = {
    container, world, imds, group, repo, url, secrets, fp, userData, read, health, unit, unitSettled, bootSettled, cmdlines,
    secretValues: [apiKeyMark, secrets.dbPassword, secrets.gitToken],
    commitBroken: () => repo.commit('stage', {
      'server.js': appFiles({ port, greeting: 'broken', crash: true })['server.js'] ?? '',
      // fails sooner: the gate's verdict is what is tested, not its patience
      'bootstrap-agent.json': JSON.stringify(manifest(10)),
    }, 'a release that cannot start'),
    async firstBoot() {
      world.proxy.setActive([{ instanceId: group.instanceId, hookName: LAUNCH_HOOK }])
      const sampler = sampleCmdlines()
      await sampler.ready
      try {
        await container.start()
        const userDataDone = await waitFor('user-data to finish', () => {
          const lines = read(ON_INSTANCE.userDataLog).trim().split('\n')
          if (lines.some(l => l.startsWith('user-data: FAILED'))) throw new Error(`user-data failed:\n${lines.slice(-30).join('\n')}`)
          return lines.at(-1)?.startsWith('user-data: OK') ? Date.now() : undefined
        }, () => `user-data log:\n${read(ON_INSTANCE.userDataLog).slice(-3000)}\ncloud-init output:\n${read('/var/log/cloud-init-output.log').slice(-3000)}`)
        const completed = await waitFor('the launching hook to be completed', () =>
          world.proxy.completions().some(c => c.hookName === LAUNCH_HOOK && c.instanceId === group.instanceId) ? Date.now() : undefined,
        async () => `bootstrap-agent.service: ${JSON.stringify(await unit('bootstrap-agent.service'))}\n${await journalOf('bootstrap-agent.service')}`)
        await unitSettled('bootstrap-agent.service')
        return { userDataMs: userDataDone - container.startedAt, continueMs: completed - container.startedAt }
      } finally {
        cmdlines.push(...(await sampler.stop()))
      }
    },
    async leaks() {
      const journal = await runClean('/usr/bin/journalctl', ['--no-pager', `--directory=${container.path(ON_INSTANCE.journal)}`, '-o', 'export'], { PATH: '/usr/bin:/bin' })
      if (journal.code !== 0 || journal.stdout.length === 0) return [`the journal could not be read (exit ${journal.code}): ${journal.stderr}`]
      return findLeaks(inst.secretValues, {
        root: container.root,
        allow: [container.path(ON_INSTANCE.envFile)],
        texts: { 'the journal (journalctl -o export)': journal.stdout, 'the console': container.console() },
        cmdlines,
      })
    },
  }
  return inst
}

/** What every first boot must show, whatever the cgroup layout (test/boot/). */
export const checkFirstBoot = async (t: Test, b: BootedInstance, layout: CgroupLayout): Promise<void> => {
  t.equal(await b.container.layout(), layout, `the container runs the ${layout} cgroup layout`)

  const userDataLog = b.read(ON_INSTANCE.userDataLog).trim().split('\n')
  t.match(userDataLog.at(-1), /^user-data: OK: bootstrap-agent \S+ installed/, 'the user-data log ends OK')
  t.comment(`${layout}: ${userDataLog.filter(l => / step \w+: /.test(l)).map(l => l.replace(/^user-data: \[\d{4}-\d\d-\d\dT([\d:]+)Z\] step (\w+):.*$/, '$2 $1')).join(', ')}`)
  const cloudInit = await waitFor('cloud-init to finish', async () => {
    const s = (await b.container.exec(['cloud-init', 'status'])).stdout.trim()
    return /status: (done|error|disabled)/.test(s) ? s : undefined
  })
  t.equal(cloudInit, 'status: done', 'cloud-init status: done')

  const agent = await b.unitSettled('bootstrap-agent.service')
  t.match(agent, { ActiveState: 'active', SubState: 'exited', Result: 'success', ExecMainStatus: '0' }, 'bootstrap-agent.service succeeded')
  const pm2 = await b.unit('bootstrap-pm2.service')
  t.match(pm2, { ActiveState: 'active', SubState: 'running' }, 'bootstrap-pm2.service is active')
  const pm2Journal = (await b.container.exec(['journalctl', '--no-pager', '-o', 'cat', '-u', 'bootstrap-pm2.service'])).stdout
  t.notMatch(pm2Journal, /ERROR|DUMP file/, 'its first start shows no error (nothing saved yet is no error)')

  const h = await b.health()
  t.ok(h, 'the service answers from the host')
  t.equal(h?.apiKey, b.fp(b.secrets.apiKey), 'API_KEY (newline, quotes, $, #, =, backslash, UTF-8) reached the service byte-exact')
  t.equal(h?.dbPassword, b.fp(b.secrets.dbPassword), 'DB_PASSWORD from Parameter Store too')
  const uid = Number((await b.container.exec(['id', '-u', 'bootstrap-app'])).stdout.trim())
  t.not(h?.uid, 0, 'the service does not run as root')
  t.equal(h?.uid, uid, 'it runs as the service user bootstrap-app')
  const cgroup = (await b.container.exec(['cat', `/proc/${h?.pid ?? 0}/cgroup`])).stdout
  t.match(cgroup, /\/system\.slice\/bootstrap-pm2\.service$/m, 'the service process belongs to bootstrap-pm2.service, not to the agent')

  const completions = b.world.proxy.completions().filter(c => c.instanceId === b.group.instanceId)
  t.match(completions, [{ hookName: LAUNCH_HOOK, result: 'CONTINUE', asgName: b.group.asgName }], 'exactly one completion of the launching hook: CONTINUE')
  t.equal(completions.length, 1)
  t.equal(b.imds.tokenlessRequests, 0, 'no IMDSv1 request')
  t.ok(b.imds.requests.some(r => r.method === 'PUT'), 'IMDSv2 tokens were asked for')

  // status runs outside the units' sandbox: it must see the watch the sandboxed unit runs
  const status = await b.container.exec(['bootstrap-agent', 'status', '--json'])
  const parsed = JSON.parse(status.stdout || '{}') as { state?: { outcome?: string }; watch?: { running?: boolean } | null }
  t.equal(parsed.state?.outcome, 'success', 'status: the boot run succeeded')
  t.equal(parsed.watch?.running, true, 'status: the watch is running')
  // and a second watch started by hand must not take the running one's lock for a leftover
  // (`timeout`: a second watch that did would poll until stopped)
  const second = await b.container.exec(['timeout', '60', 'bootstrap-agent', 'watch'])
  t.equal(second.code, 3, 'a second watch, started outside the sandbox, exits 3: the lock is held')
  t.match(second.stderr, /another run holds the lock \/var\/lib\/bootstrap-agent\/watch\.lock/)
}
