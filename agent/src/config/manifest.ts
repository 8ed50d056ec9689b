/**
 * The app repository's manifest: parsed, validated against MANIFEST_SCHEMA, and resolved into the
 * ServiceSpec of the one service this instance runs. Without a manifest, defaults apply (service
 * at the repository root, `npm start` or node <main>, PM2-online health check).
 */
import { join } from 'node:path'
import { Ajv } from 'ajv'
import { lstatBeneath, resolveBeneath } from '../core/beneath.js'
import { ConfigError } from '../core/errors.js'
import { readUntrusted } from '../core/untrusted-files.js'
import { MANIFEST_SCHEMA, PATTERN_HELP } from './manifest-schema.js'
import { quote } from './names.js'

export const MANIFEST_MAX_BYTES = 256 * 1024

export type StartSpec =
  | { kind: 'script'; script: string }
  | { kind: 'npm'; script: string }
  | { kind: 'command'; argv: string[] }
  | { kind: 'static'; dir: string; port: number; spa: boolean }

export type HealthSpec =
  | { kind: 'http'; url: string; expectStatus: number; timeoutMs?: number }
  | { kind: 'pm2'; stableMs?: number; timeoutMs?: number }

export interface ServiceSpec {
  name: string
  /** relative to the repository root ('.' for the root) */
  path: string
  start: StartSpec
  instances: number | 'max'
  nodeArgs: string[]
  build: string[] | undefined
  env: Record<string, string>
  health: HealthSpec
  requiredEnv: string[]
  killTimeoutMs: number
  /** argv run before PM2 stops the service when the instance goes away (watch's drain) */
  preStop: string[] | undefined
  /** whether the service path holds a package.json (so npm ci applies) */
  hasPackageJson: boolean
  fromManifest: boolean
}

interface RawService {
  path?: string
  start?: { script?: string; npm?: string; command?: string[]; static?: { dir: string; port: number; spa?: boolean } }
  instances?: number | 'max'
  nodeArgs?: string[]
  build?: string[]
  env?: Record<string, string>
  health?: { url?: string; expectStatus?: number; timeoutSeconds?: number; stableSeconds?: number }
  requiredEnv?: string[]
  killTimeoutMs?: number
  preStop?: string[]
}
interface RawManifest {
  version: 1
  services: Record<string, RawService>
}

const ajv = new Ajv({ allErrors: false, strict: true, allowUnionTypes: true })
const validate = ajv.compile<RawManifest>(MANIFEST_SCHEMA)

const remedyFor = (file: string) => `fix ${file} in the repository (schema: bootstrap-agent manifest-schema) and push a new commit`

/** Pure: text -> validated manifest. */
export const parseManifest = (text: string, file: string): RawManifest => {
  if (Buffer.byteLength(text) > MANIFEST_MAX_BYTES) {
    throw new ConfigError(`${file} is ${Buffer.byteLength(text)} bytes: expected at most ${MANIFEST_MAX_BYTES}`, remedyFor(file), 'MANIFEST_INVALID')
  }
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch (e) {
    throw new ConfigError(`${file} is not valid JSON: ${e instanceof Error ? e.message : String(e)}`, remedyFor(file), 'MANIFEST_INVALID')
  }
  if (!validate(data)) {
    const err = validate.errors?.[0]
    const field = err?.instancePath ? err.instancePath.replace(/^\//, '').replaceAll('/', '.') : '(top level)'
    let detail = err?.message ?? 'is invalid'
    if (err?.keyword === 'additionalProperties' && 'additionalProperty' in (err.params ?? {})) {
      detail = `has unknown key ${quote(String((err.params as { additionalProperty: unknown }).additionalProperty))}`
    } else if (err) {
      const pattern = err.keyword === 'pattern' ? PATTERN_HELP[String((err.params as { pattern?: unknown }).pattern)] : undefined
      const why = pattern ? `is not valid: expected ${pattern}` : err.message ?? 'is invalid'
      const got = JSON.stringify(valueAt(data, err.instancePath)) ?? 'nothing'
      detail = `${why}; got ${got.length > 80 ? `${got.slice(0, 80)}…` : got}`
    }
    throw new ConfigError(`${file}: field "${field}" ${detail}`, remedyFor(file), 'MANIFEST_INVALID')
  }
  return data
}

const valueAt = (data: unknown, pointer: string): unknown => {
  let cur = data
  for (const part of pointer.split('/').slice(1)) {
    if (typeof cur !== 'object' || cur === null) return undefined
    cur = (cur as Record<string, unknown>)[part.replaceAll('~1', '/').replaceAll('~0', '~')]
  }
  return cur
}

export interface PackageJsonInfo {
  hasStartScript: boolean
  main: string | undefined
}

/** Pure: manifest (or none) + facts about the service dir -> ServiceSpec. */
export const resolveServiceSpec = (
  manifest: RawManifest | undefined,
  service: string,
  file: string,
  pkg: PackageJsonInfo | undefined,
): ServiceSpec => {
  let raw: RawService = {}
  if (manifest) {
    const found = manifest.services[service]
    if (!found) {
      throw new ConfigError(
        `${file} does not declare service ${quote(service)}; it declares ${Object.keys(manifest.services).map(s => quote(s)).join(', ')}`,
        `add "${service}" to "services" in ${file}, or fix the Service tag`,
        'MANIFEST_SERVICE_MISSING',
      )
    }
    raw = found
  }
  let start: StartSpec
  const s = raw.start
  if (s?.script !== undefined) start = { kind: 'script', script: s.script }
  else if (s?.npm !== undefined) start = { kind: 'npm', script: s.npm }
  else if (s?.command !== undefined) start = { kind: 'command', argv: s.command }
  else if (s?.static !== undefined) start = { kind: 'static', dir: s.static.dir, port: s.static.port, spa: s.static.spa ?? false }
  else if (pkg?.hasStartScript) start = { kind: 'npm', script: 'start' }
  else start = { kind: 'script', script: pkg?.main ?? 'index.js' }

  if (start.kind !== 'script' && (raw.instances ?? 1) !== 1) {
    throw new ConfigError(`${file}: field "services.${service}.instances" is ${JSON.stringify(raw.instances)}, but cluster mode needs a Node.js "script" start`, remedyFor(file), 'MANIFEST_INVALID')
  }
  const h = raw.health
  const timeoutMs = h?.timeoutSeconds === undefined ? undefined : h.timeoutSeconds * 1000
  const health: HealthSpec = h?.url !== undefined
    ? { kind: 'http', url: h.url, expectStatus: h.expectStatus ?? 200, ...(timeoutMs === undefined ? {} : { timeoutMs }) }
    : { kind: 'pm2', ...(h?.stableSeconds === undefined ? {} : { stableMs: h.stableSeconds * 1000 }), ...(timeoutMs === undefined ? {} : { timeoutMs }) }
  return {
    name: service,
    path: raw.path ?? '.',
    start,
    instances: raw.instances ?? 1,
    nodeArgs: raw.nodeArgs ?? [],
    build: raw.build,
    env: raw.env ?? {},
    health,
    requiredEnv: raw.requiredEnv ?? [],
    killTimeoutMs: raw.killTimeoutMs ?? 5000,
    preStop: raw.preStop,
    hasPackageJson: pkg !== undefined,
    fromManifest: manifest !== undefined,
  }
}

/** A checked-out repository: its directory, and the uid whose files it holds (the service user
 * for a release; the agent itself for plan's private clone). */
export interface RepoTree {
  dir: string
  owner: number
}

/** package.json is read for two facts; a bigger one is no package.json a service would commit */
const PACKAGE_JSON_MAX_BYTES = 4 * 1024 * 1024

/**
 * A path from the manifest resolved inside the repository, following the repository's own links
 * but refusing any (a `..`, an absolute or escaping link) that would leave it, before anything
 * outside is looked at (core/beneath.ts). Returns it relative to the repository, links resolved.
 */
export const insideRepo = async (repo: RepoTree, rel: string, what: string): Promise<string> => {
  const r = await resolveBeneath(repo.dir, rel)
  if (r.kind === 'missing') {
    throw new ConfigError(`${what} ${quote(rel)} does not exist in the repository`, 'fix the path in the manifest or add it to the repository', 'MANIFEST_PATH_MISSING')
  }
  if (r.kind === 'escapes') {
    throw new ConfigError(`${what} ${quote(rel)} resolves outside the repository`, 'use a path inside the repository (symlinks leaving it are refused)', 'MANIFEST_PATH_ESCAPES')
  }
  return r.rel
}

/**
 * Reads the manifest and package.json of a checked-out release. Root reads them from a tree the
 * service user wrote (and a commit chose): as regular files of that user, never through a link
 * (core/untrusted-files.ts), so a manifest committed as a link to a root-only file is refused
 * instead of quoted back in a JSON error. The spec's `path` comes back with links resolved.
 */
export const loadServiceSpec = async (repo: RepoTree, manifestFile: string, service: string): Promise<ServiceSpec> => {
  const size = (await lstatBeneath(repo.dir, manifestFile))?.size ?? 0
  if (size > MANIFEST_MAX_BYTES) {
    throw new ConfigError(`${manifestFile} is ${size} bytes: expected at most ${MANIFEST_MAX_BYTES}`, remedyFor(manifestFile), 'MANIFEST_INVALID')
  }
  const text = await readUntrusted({ dir: repo.dir, rel: manifestFile, owner: repo.owner }, MANIFEST_MAX_BYTES)
  const manifest = text === undefined ? undefined : parseManifest(text, manifestFile)
  const rawPath = manifest?.services[service]?.path ?? '.'
  const servicePath = await insideRepo(repo, rawPath, `services.${service}.path`)
  const pkgText = await readUntrusted({ dir: repo.dir, rel: join(servicePath, 'package.json'), owner: repo.owner }, PACKAGE_JSON_MAX_BYTES)
  let pkg: PackageJsonInfo | undefined
  if (pkgText !== undefined) {
    let data: unknown
    try {
      data = JSON.parse(pkgText)
    } catch (e) {
      throw new ConfigError(`${join(rawPath, 'package.json')} is not valid JSON: ${e instanceof Error ? e.message : String(e)}`, 'fix package.json in the repository', 'PACKAGE_JSON_INVALID')
    }
    const obj = typeof data === 'object' && data !== null ? (data as Record<string, unknown>) : {}
    const scripts = typeof obj['scripts'] === 'object' && obj['scripts'] !== null ? (obj['scripts'] as Record<string, unknown>) : {}
    pkg = { hasStartScript: typeof scripts['start'] === 'string', main: typeof obj['main'] === 'string' ? obj['main'] : undefined }
  }
  const spec = resolveServiceSpec(manifest, service, manifestFile, pkg)
  if (spec.start.kind === 'script') await insideRepo(repo, join(servicePath, spec.start.script), `services.${service}.start.script`)
  return { ...spec, path: servicePath }
}
