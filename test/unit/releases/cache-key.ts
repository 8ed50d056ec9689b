/**
 * releases/cache-key.ts: one case per input of the release cache key (each one changes it, and
 * nothing else does), the runtime this machine reports, and the key of a release on disk.
 */
import t, { type Test } from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ServiceSpec } from '../../../agent/src/config/manifest.js'
import { currentRuntime, libcOf, readReleaseCacheKey, releaseCacheKey, runtimeId, type CacheKeyInputs, type Runtime } from '../../../agent/src/releases/cache-key.js'

const lockfile = JSON.stringify({ name: 'app', version: '1.0.0', lockfileVersion: 3, packages: { '': { name: 'app' } } })
const packageJson = JSON.stringify({ name: 'app', version: '1.0.0', dependencies: { tiny: '1.0.0' }, scripts: { start: 'node s.js' } })
const spec: ServiceSpec = {
  name: 'app', path: '.', start: { kind: 'script', script: 'server.js' }, instances: 1, nodeArgs: [], build: ['npm', 'run', 'build'],
  env: { PORT: '3000' }, health: { kind: 'http', url: 'http://127.0.0.1:3000/health', expectStatus: 200 }, requiredEnv: ['API_KEY'],
  killTimeoutMs: 5000, preStop: undefined, hasPackageJson: true, fromManifest: true,
}
const runtime: Runtime = { node: '22.11.0', abi: '127', platform: 'linux', arch: 'x64', libc: 'glibc2.36' }
const base: CacheKeyInputs = { commit: 'a'.repeat(40), spec, install: { lockfile, packageJson }, runtime }
const key = releaseCacheKey(base)

const differs = (t: Test, name: string, over: Partial<CacheKeyInputs>) => t.not(releaseCacheKey({ ...base, ...over }), key, name)

t.test('the key is a sha256, stable for the same inputs in any key order', async t => {
  t.match(key, /^[0-9a-f]{64}$/)
  t.equal(releaseCacheKey({ ...base, spec: { ...spec } }), key)
  const reordered = Object.fromEntries(Object.entries(spec).reverse()) as unknown as ServiceSpec
  t.equal(releaseCacheKey({ ...base, spec: reordered }), key, 'the manifest entry hashes canonically')
  t.equal(releaseCacheKey({ ...base, commit: 'A'.repeat(40) }), key, 'the commit is case-insensitive hex')
})

t.test('input: the commit', async t => differs(t, 'another commit', { commit: 'b'.repeat(40) }))

t.test('input: the service (its manifest entry)', async t => {
  differs(t, 'another service of the same commit', { spec: { ...spec, name: 'worker' } })
  differs(t, 'another path in the repository', { spec: { ...spec, path: 'services/app' } })
  differs(t, 'another start', { spec: { ...spec, start: { kind: 'npm', script: 'start' } } })
  differs(t, 'another non-secret env', { spec: { ...spec, env: { PORT: '3001' } } })
  differs(t, 'another health check', { spec: { ...spec, health: { kind: 'pm2' } } })
})

t.test('input: the install inputs (lockfile, package.json install fields, .npmrc)', async t => {
  differs(t, 'another lockfile', { install: { lockfile: `${lockfile}\n`, packageJson } })
  differs(t, 'another dependency in package.json', { install: { lockfile, packageJson: JSON.stringify({ ...JSON.parse(packageJson), dependencies: { tiny: '2.0.0' } }) } })
  differs(t, 'an .npmrc', { install: { lockfile, packageJson, npmrc: 'registry=https://npm.example/\n' } })
  differs(t, 'no lockfile at all', { install: undefined })
  t.equal(releaseCacheKey({ ...base, install: { lockfile, packageJson: JSON.stringify({ ...JSON.parse(packageJson), description: 'x' }) } }), key, 'a field npm ci does not read is not an input')
})

t.test('input: the build command', async t => {
  differs(t, 'another build command', { spec: { ...spec, build: ['npm', 'run', 'build:prod'] } })
  differs(t, 'no build command', { spec: { ...spec, build: undefined } })
})

t.test('input: the Node version and ABI', async t => {
  differs(t, 'another Node version, same ABI', { runtime: { ...runtime, node: '22.12.0' } })
  differs(t, 'another ABI', { runtime: { ...runtime, abi: '131' } })
})

t.test('input: platform, arch, libc', async t => {
  differs(t, 'another platform', { runtime: { ...runtime, platform: 'darwin' } })
  differs(t, 'another arch', { runtime: { ...runtime, arch: 'arm64' } })
  differs(t, 'another glibc', { runtime: { ...runtime, libc: 'glibc2.34' } })
  differs(t, 'musl', { runtime: { ...runtime, libc: 'musl' } })
})

t.test('this machine: its runtime, and a runtime id usable in an object key', async t => {
  const r = currentRuntime()
  t.same({ node: r.node, abi: r.abi, platform: r.platform, arch: r.arch }, { node: process.versions.node, abi: process.versions.modules, platform: process.platform, arch: process.arch })
  t.match(r.libc, process.platform === 'linux' ? /^(glibc\d+\.\d+|musl)$/ : /^none$/)
  t.equal(runtimeId(runtime), 'linux-x64-glibc2.36-node22.11.0-abi127')
  t.equal(runtimeId({ ...runtime, libc: 'odd libc/1' }), 'linux-x64-odd_libc_1-node22.11.0-abi127', 'nothing outside [A-Za-z0-9._-]')
})

t.test('readReleaseCacheKey: the install inputs come from the service directory of the release', async t => {
  const dir = t.testdir({ services: { app: { 'package.json': packageJson, 'package-lock.json': lockfile } } })
  const inService = { ...spec, path: 'services/app' }
  const repo = { dir, owner: process.getuid?.() ?? 0 }
  t.equal(await readReleaseCacheKey(repo, inService, base.commit, runtime), releaseCacheKey({ ...base, spec: inService }))
  writeFileSync(join(dir, 'services/app/.npmrc'), 'fetch-retries=1\n')
  t.equal(await readReleaseCacheKey(repo, inService, base.commit, runtime), releaseCacheKey({ ...base, spec: inService, install: { lockfile, packageJson, npmrc: 'fetch-retries=1\n' } }))
  t.equal(await readReleaseCacheKey(repo, spec, base.commit, runtime), releaseCacheKey({ ...base, install: undefined }), 'no lockfile at the root')
})

t.test('libc: the glibc version from Node\'s report; musl on a Linux without one; none elsewhere', async t => {
  t.equal(libcOf('linux', { header: { glibcVersionRuntime: '2.36' } }), 'glibc2.36')
  t.equal(libcOf('linux', { header: {} }), 'musl')
  t.equal(libcOf('linux', undefined), 'musl')
  t.equal(libcOf('darwin', { header: {} }), 'none')
})
