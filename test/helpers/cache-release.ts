/**
 * Test fixture for the release cache's unit tests: a service directory as the agent lays it out
 * (releases owned by the service user, the agent's own 0700 work directory, the env file), with
 * one release in it as clone + npm ci + build would have left it, older than its completion.
 */
import { execFileSync } from 'node:child_process'
import { chownSync, mkdirSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Test } from 'tap'
import { loadServiceSpec, type ServiceSpec } from '../../agent/src/config/manifest.js'
import type { Runtime } from '../../agent/src/releases/cache-key.js'
import { serializeEnv } from '../../agent/src/secrets/env-file.js'
import { SERVICE_USER } from './archive-worker.js'
import { sandboxDir } from './sandbox.js'

export const LOC = { bucket: 'fleet', prefix: 'releases/stage', url: 's3://fleet/releases/stage' }
export const RUNTIME: Runtime = { node: '22.11.0', abi: '127', platform: 'linux', arch: 'x64', libc: 'glibc2.36' }
export const COMMIT = '0123456789abcdef0123456789abcdef01234567'
export const RELEASE_ID = '20261201T000000Z-0123456789ab'

export interface CacheSandbox {
  /** what the agent's releases functions take: the service directory, the records' */
  paths: { serviceDir: string; releaseRecords: string }
  /** the uid the release's files belong to: the service user's when root */
  owner: number
  serviceDir: string
  releases: string
  workDir: string
  envFile: string
  /** the release on disk and its resolved manifest entry */
  dir: string
  spec: ServiceSpec
}

const FILES: Record<string, string> = {
  'bootstrap-agent.json': JSON.stringify({ version: 1, services: { app: { start: { script: 'server.js' }, build: ['node', 'build.js'] } } }),
  'package.json': JSON.stringify({ name: 'app', version: '1.0.0', dependencies: { dep: '1.0.0' } }),
  'package-lock.json': JSON.stringify({ name: 'app', lockfileVersion: 3, packages: { '': { name: 'app' }, 'node_modules/dep': { version: '1.0.0' } } }),
  'server.js': 'console.log("serving")\n',
  'node_modules/dep/index.js': 'module.exports = 1\n',
  'dist/app.js': 'built()\n',
}

export const cacheSandbox = async (t: Test, secrets: Record<string, string> = { API_KEY: 'sk-live-7f3a9c2e5b1d' }): Promise<CacheSandbox> => {
  const root = sandboxDir('cache-unit')
  t.teardown(() => execFileSync('rm', ['-rf', root]))
  const serviceDir = join(root, 'srv/app')
  const releases = join(serviceDir, 'releases')
  const workDir = join(root, 'var/lib/bootstrap-agent/release-cache')
  const envDir = join(root, 'etc/bootstrap-agent/env')
  mkdirSync(releases, { recursive: true })
  // as the agent makes them: its state and etc directories 0755, the two below them 0700
  mkdirSync(join(workDir, '..'), { recursive: true, mode: 0o755 })
  mkdirSync(workDir, { mode: 0o700 })
  mkdirSync(join(envDir, '..'), { recursive: true, mode: 0o755 })
  mkdirSync(envDir, { mode: 0o700 })
  const envFile = join(envDir, 'app.env')
  writeFileSync(envFile, serializeEnv(secrets), { mode: 0o600 })
  const dir = join(releases, RELEASE_ID)
  const old = new Date(Date.now() - 60_000)
  for (const [p, c] of Object.entries(FILES)) {
    mkdirSync(join(dir, p, '..'), { recursive: true })
    writeFileSync(join(dir, p), c)
    utimesSync(join(dir, p), old, old)
  }
  if (SERVICE_USER) {
    for (const d of [releases, envDir]) chownSync(d, SERVICE_USER.uid, SERVICE_USER.gid)
    chownSync(envFile, SERVICE_USER.uid, SERVICE_USER.gid)
    execFileSync('chown', ['-R', `${SERVICE_USER.uid}:${SERVICE_USER.gid}`, dir])
  }
  const owner = SERVICE_USER?.uid ?? (process.getuid?.() ?? 0)
  const paths = { serviceDir, releaseRecords: join(root, 'var/lib/bootstrap-agent/releases/app') }
  return { paths, owner, serviceDir, releases, workDir, envFile, dir, spec: await loadServiceSpec({ dir, owner }, 'bootstrap-agent.json', 'app') }
}
