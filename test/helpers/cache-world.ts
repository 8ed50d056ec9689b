/**
 * Test fixture for the release cache: the AWS world (moto behind the lifecycle proxy) plus moto's
 * S3 behind a fault proxy (AWS_ENDPOINT_URL_S3, path-style), a private git repository over smart
 * HTTP behind a fault proxy, an npm "registry" (one tarball) behind a fault proxy, the service's
 * secrets, and any number of simulated instances: each its own root (its own PM2 daemon), its own
 * IMDSv2 server and instance id in one Auto Scaling group with a launching hook. Everything is
 * stopped in teardown, even when a test fails.
 *
 * The app needs all three of the source path's dependencies: a clone, `npm ci` fetching `tiny`
 * from the registry (its .npmrc points npm's default registry at a closed port), and a build that
 * writes dist/build.json. With `port: 0` it listens on a port of its own choosing and is checked
 * by PM2's online state, so several instances can serve at once.
 */
import { createHash, randomBytes } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3'
import { CreateSecretCommand } from '@aws-sdk/client-secrets-manager'
import { PutParameterCommand } from '@aws-sdk/client-ssm'
import { startAwsWorld, type AwsWorld, type Teardown } from './aws-world.js'
import { startFaultProxy, type FaultProxy } from './fault-proxy.js'
import { startFileServer, type FileServer } from './file-server.js'
import { createFixtureRepo, type FixtureRepo } from './fixture-repo.js'
import { startGitHttpServer } from './git-http-server.js'
import type { ImdsServer } from './imds-server.js'
import { freePort, killPm2, runCli, startCli, type CliResult, type StartedCli } from './sandbox.js'

export const SERVICE = 'app'
export const HOOK = 'bootstrap-launch'
export const BUCKET = 'fleet-releases'
/** the cache of the stage environment: one prefix per environment */
export const CACHE_URL = `s3://${BUCKET}/releases/{environment}`
export const PREFIX = 'releases/stage'

export interface AppOptions {
  greeting: string
  /** 0: any free port, PM2's online state as the health check (several instances at once) */
  port: number
  /** extra files (a large build output, say) */
  extra?: Record<string, string>
  /** replaces the build command */
  build?: string[]
  /** the service writes API_KEY into its own release at start (as a careless app caches its
   * environment): `backdated` then gives the file an old mtime, as a copy that keeps times would */
  writesSecret?: 'fresh' | 'backdated'
}

export interface Instance {
  instanceId: string
  root: string
  imds: ImdsServer
  serviceDir: string
  envFile: string
  env: Record<string, string>
  /** `run --reason boot` on this instance, waiting on its launching lifecycle action */
  run(flags?: Record<string, string>, env?: Record<string, string>): Promise<CliResult>
  /** the same run, returned at once (to watch it, or kill it midway); `entry`: another build */
  start(flags?: Record<string, string>, env?: Record<string, string>, entry?: string): StartedCli
  state(): StateJson
}

export interface StateJson {
  outcome: string
  exitCode?: number
  commit?: string
  releaseFrom?: string
  cache?: { location: string; lookup?: string; commitFromPointer?: string; published?: string }
  phases: { name: string; status: string; detail?: string; durationMs: number }[]
  error?: { code: string; message: string; remedy: string; phase?: string }
}

export interface CacheWorld {
  world: AwsWorld
  s3Proxy: FaultProxy
  gitProxy: FaultProxy
  registryProxy: FaultProxy
  registry: FileServer
  repo: FixtureRepo
  /** the secret values: none may appear outside the env file (and the service) */
  secrets: string[]
  apiKey: string
  /** `branch` gets a commit of the app */
  commit(o: AppOptions, branch?: string): Promise<string>
  /** instance number `n` of the group (0-based): a fresh root the first time */
  instance(n: number): Promise<Instance>
  /** every object in the bucket: key -> bytes */
  objects(): Promise<Map<string, Buffer>>
  putObject(key: string, body: Buffer | string): Promise<void>
  deleteObject(key: string): Promise<void>
}

const tinyTarball = (dir: string): { file: string; integrity: string } => {
  const file = join(dir, 'tiny-1.0.0.tgz')
  mkdirSync(join(dir, 'tiny/package'), { recursive: true })
  writeFileSync(join(dir, 'tiny/package/package.json'), JSON.stringify({ name: 'tiny', version: '1.0.0', main: 'index.js' }))
  writeFileSync(join(dir, 'tiny/package/index.js'), "module.exports = 'tiny'\n")
  execFileSync('tar', ['-czf', file, '-C', join(dir, 'tiny'), 'package'])
  return { file, integrity: `sha512-${createHash('sha512').update(readFileSync(file)).digest('base64')}` }
}

const SERVER = (greeting: string, port: number, writesSecret: AppOptions['writesSecret']) => `
const http = require('node:http')
const { createHash } = require('node:crypto')
const { mkdirSync, readFileSync, realpathSync, utimesSync, writeFileSync } = require('node:fs')
const { basename } = require('node:path')
const tiny = require('tiny')
${writesSecret === undefined ? '' : `mkdirSync(__dirname + '/runtime', { recursive: true })
writeFileSync(__dirname + '/runtime/env-cache.txt', process.env.API_KEY)
${writesSecret === 'backdated' ? "utimesSync(__dirname + '/runtime/env-cache.txt', new Date('2020-01-01'), new Date('2020-01-01'))" : ''}`}
const build = JSON.parse(readFileSync(__dirname + '/dist/build.json', 'utf8'))
const fp = v => v === undefined ? null : createHash('sha256').update(v).digest('hex')
http.createServer((req, res) => {
  res.setHeader('content-type', 'application/json')
  res.end(JSON.stringify({ greeting: ${JSON.stringify(greeting)}, tiny, build, release: basename(realpathSync(__dirname)), apiKey: fp(process.env.API_KEY), uid: process.getuid() }))
}).listen(${port === 0 ? 0 : 'Number(process.env.PORT)'}, '127.0.0.1', () => console.log('listening'))
`

export const startCacheWorld = async (t: Teardown, dir: string): Promise<CacheWorld> => {
  const world = await startAwsWorld(t)
  await world.createBucket(BUCKET)
  const proxy = async (target: string) => {
    const p = await startFaultProxy(target)
    t.teardown(() => p.stop())
    return p
  }
  const s3Proxy = await proxy(world.moto.endpoint)

  const token = `tok-${randomBytes(16).toString('hex')}`
  const apiKeyMark = `key-${randomBytes(16).toString('hex')}`
  const apiKey = `${apiKeyMark}\n"quoted" $HOME #hash = back\\slash ünïcode`
  const dbPass = `db-${randomBytes(16).toString('hex')}`

  const git = await startGitHttpServer({ projectRoot: join(dir, 'git'), username: 'deploy', password: token })
  t.teardown(() => git.stop())
  const gitProxy = await proxy(git.url(''))
  const tiny = tinyTarball(dir)
  const registry = await startFileServer({ '/tiny/-/tiny-1.0.0.tgz': tiny.file })
  t.teardown(() => registry.stop())
  const registryProxy = await proxy(registry.url('/'))
  const closedPort = await freePort()

  const files = (o: AppOptions): Record<string, string> => ({
    'package.json': `${JSON.stringify({ name: 'app', version: '1.0.0', private: true, main: 'server.js', dependencies: { tiny: '1.0.0' } }, null, 2)}\n`,
    'package-lock.json': `${JSON.stringify({
      name: 'app', version: '1.0.0', lockfileVersion: 3, requires: true,
      packages: {
        '': { name: 'app', version: '1.0.0', dependencies: { tiny: '1.0.0' } },
        'node_modules/tiny': { version: '1.0.0', resolved: registryProxy.url('tiny/-/tiny-1.0.0.tgz'), integrity: tiny.integrity },
      },
    }, null, 2)}\n`,
    '.npmrc': `registry=http://127.0.0.1:${closedPort}/\nfetch-retries=0\naudit=false\nfund=false\n`,
    'build.js': "const fs = require('node:fs')\nfs.mkdirSync('dist', { recursive: true })\nfs.writeFileSync('dist/build.json', JSON.stringify({ builtBy: process.pid, at: Date.now() }))\n",
    'server.js': SERVER(o.greeting, o.port, o.writesSecret),
    'bootstrap-agent.json': `${JSON.stringify({
      version: 1,
      services: {
        [SERVICE]: {
          start: { script: 'server.js' },
          build: o.build ?? ['node', 'build.js'],
          ...(o.port === 0
            ? { health: { stableSeconds: 1, timeoutSeconds: 30 } }
            : { env: { PORT: String(o.port) }, health: { url: `http://127.0.0.1:${o.port}/health`, timeoutSeconds: 20 } }),
          requiredEnv: ['API_KEY'],
        },
      },
    }, null, 2)}\n`,
    ...o.extra,
  })

  const repo = await createFixtureRepo({ root: join(dir, 'git'), name: 'app', branches: { stage: {}, main: {} } })
  const gitSecretId = `git/${SERVICE}`
  await world.sm.send(new CreateSecretCommand({ Name: `stage/${SERVICE}`, SecretString: JSON.stringify({ API_KEY: apiKey }) }))
  await world.sm.send(new CreateSecretCommand({ Name: gitSecretId, SecretString: JSON.stringify({ username: 'deploy', token }) }))
  await world.ssm.send(new PutParameterCommand({ Name: `/stage/${SERVICE}/db/password`, Value: dbPass, Type: 'SecureString' }))
  const group = await world.createGroup({ hooks: [{ name: HOOK, heartbeatTimeout: 300 }], size: 24 })

  const instances = new Map<number, Instance>()
  const instance = async (n: number): Promise<Instance> => {
    const known = instances.get(n)
    if (known) return known
    const instanceId = group.instanceIds[n]
    if (instanceId === undefined) throw new Error(`the group has ${group.instanceIds.length} instances, not ${n + 1}`)
    const root = join(dir, `instance-${n}`)
    t.teardown(() => killPm2(root))
    const imds = await world.startImds({ instanceId, lifecycleState: 'InService', tags: { Service: SERVICE, Environment: 'stage', Repository: gitProxy.url('app.git') } })
    const env = world.agentEnv(imds.endpoint, { BOOTSTRAP_GIT_CREDENTIAL_SECRET: gitSecretId, BOOTSTRAP_RELEASE_CACHE: CACHE_URL, AWS_ENDPOINT_URL_S3: s3Proxy.endpoint })
    const args = (flags: Record<string, string>) => {
      // every instance booted so far waits on its launching action (answered once per run)
      world.proxy.setActive([...instances.values()].map(x => ({ instanceId: x.instanceId, hookName: HOOK })))
      return ['run', '--reason', 'boot', '--root', root, '--json', '--stable-window', '1', '--git-attempts', '1', '--git-timeout', '10', ...Object.entries(flags).flatMap(([k, v]) => [`--${k}`, v])]
    }
    const i: Instance = {
      instanceId, root, imds, env,
      serviceDir: join(root, `srv/${SERVICE}`),
      envFile: join(root, `etc/bootstrap-agent/env/${SERVICE}.env`),
      run: (flags = {}, extra = {}) => runCli(args(flags), { ...env, ...extra }),
      start: (flags = {}, extra = {}, entry) => startCli(args(flags), { ...env, ...extra }, entry),
      state: () => JSON.parse(readFileSync(join(root, 'var/lib/bootstrap-agent/state.json'), 'utf8')) as StateJson,
    }
    instances.set(n, i)
    return i
  }

  const objects = async (): Promise<Map<string, Buffer>> => {
    const out = new Map<string, Buffer>()
    let ContinuationToken: string | undefined
    do {
      const page = await world.s3.send(new ListObjectsV2Command({ Bucket: BUCKET, ContinuationToken }))
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined) continue
        const body = await world.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: o.Key }))
        out.set(o.Key, Buffer.from(await body.Body?.transformToByteArray() ?? []))
      }
      ContinuationToken = page.NextContinuationToken
    } while (ContinuationToken)
    return out
  }

  return {
    world, s3Proxy, gitProxy, registryProxy, registry, repo,
    secrets: [token, apiKeyMark, dbPass],
    apiKey,
    commit: (o, branch = 'stage') => repo.commit(branch, files(o), o.greeting),
    instance,
    objects,
    putObject: async (key, body) => void (await world.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }))),
    deleteObject: async key => void (await world.s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }))),
  }
}
