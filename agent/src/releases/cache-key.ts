/**
 * The release cache key: everything that makes two releases of a service differ, hashed. Two
 * instances that compute the same key would build byte-for-byte interchangeable releases, so one
 * may boot from what the other published (README "Release cache").
 *
 * | input | why it is in the key |
 * |---|---|
 * | `CACHE_FORMAT` | the archive layout and entry format of this agent; bumping it turns every older entry into a miss |
 * | commit | the source |
 * | service and its manifest entry, as the agent resolved it (path, start, env, health, build...) | two services of a monorepo share a commit, not a release; the resolved entry also carries the defaults this agent applied |
 * | install inputs: lockfile, package.json's install fields and scripts, .npmrc (releases/install.ts) | what npm ci read |
 * | build command | what produced the build output |
 * | Node version and ABI (`process.versions.modules`) | native modules are built for one ABI; the version for the rest of what npm and the build did |
 * | platform, arch, libc (glibc version, or musl) | native modules and prebuilt binaries are per platform, CPU and C library |
 *
 * All of the source's part is fixed by the commit, so the cache finds an entry by the commit and
 * the runtime before any source is at hand (releases/cache-index.ts), and the full key, recorded
 * in the entry, is computed again from the extracted release before it is used.
 */
import { createHash } from 'node:crypto'
import type { RepoTree, ServiceSpec } from '../config/manifest.js'
import { installInputsDigest, readInstallInputs, type InstallInputs } from './install.js'

export const CACHE_FORMAT = 1

export interface Runtime {
  /** process.versions.node */
  node: string
  /** process.versions.modules: the ABI native modules are built for */
  abi: string
  platform: string
  arch: string
  /** `glibc<version>`, `musl`, or `none` off Linux */
  libc: string
}

/** glibc reports its version in Node's diagnostic report; a Linux without it is musl (Alpine). */
export const libcOf = (platform: string, report: unknown): string => {
  const header = typeof report === 'object' && report !== null && 'header' in report ? report.header : undefined
  const glibc = typeof header === 'object' && header !== null && 'glibcVersionRuntime' in header ? header.glibcVersionRuntime : undefined
  if (typeof glibc === 'string' && glibc !== '') return `glibc${glibc}`
  return platform === 'linux' ? 'musl' : 'none'
}

let runtime: Runtime | undefined

/** This process's runtime: asked once (Node's report takes a few ms), it cannot change. */
export const currentRuntime = (): Runtime => (runtime ??= {
  node: process.versions.node,
  abi: process.versions.modules,
  platform: process.platform,
  arch: process.arch,
  libc: libcOf(process.platform, process.report.getReport()),
})

/** The runtime as one segment of an object key, e.g. `linux-x64-glibc2.36-node20.20.2-abi115`. */
export const runtimeId = (r: Runtime): string =>
  `${r.platform}-${r.arch}-${r.libc}-node${r.node}-abi${r.abi}`.replace(/[^A-Za-z0-9._-]/g, '_')

export interface CacheKeyInputs {
  commit: string
  /** the service's manifest entry as resolved (config/manifest.ts): name, path, start, env, build... */
  spec: ServiceSpec
  /** undefined: no lockfile in the service directory (no npm ci) */
  install: InstallInputs | undefined
  runtime: Runtime
}

/** JSON with object keys sorted at every level: the same value always hashes the same. */
const canonical = (v: unknown): unknown => {
  if (Array.isArray(v)) return v.map(canonical)
  if (typeof v === 'object' && v !== null) {
    return Object.fromEntries(Object.keys(v).sort().map(k => [k, canonical((v as Record<string, unknown>)[k])]))
  }
  return v
}

export const releaseCacheKey = (i: CacheKeyInputs): string =>
  createHash('sha256')
    .update(JSON.stringify(canonical({
      format: CACHE_FORMAT,
      commit: i.commit.toLowerCase(),
      service: i.spec.name,
      manifestEntry: i.spec,
      install: i.install === undefined ? null : installInputsDigest(i.install),
      build: i.spec.build ?? null,
      runtime: i.runtime,
    })))
    .digest('hex')

/** The key of a release on disk: its install inputs are read from the service's directory, as
 * files of the service user (releases/install.ts). */
export const readReleaseCacheKey = async (repo: RepoTree, spec: ServiceSpec, commit: string, runtime: Runtime): Promise<string> =>
  releaseCacheKey({ commit, spec, install: await readInstallInputs(repo, spec.path), runtime })
