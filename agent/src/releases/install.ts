/**
 * Dependencies of a release: `npm ci` as the service user, no shell, bounded by a timeout, output
 * streamed to the log. Skipped when a previous good release was installed from the same inputs
 * (lockfile, package.json's dependencies and install scripts, .npmrc) with the same Node ABI: its
 * node_modules is reused instead (no lifecycle script runs again).
 */
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { lstatBeneath } from '../core/beneath.js'
import { AgentError } from '../core/errors.js'
import { outputEvidence } from '../core/evidence.js'
import type { Exec } from '../core/exec.js'
import { parseJsonObject } from '../core/json-object.js'
import { readUntrusted } from '../core/untrusted-files.js'
import type { RepoTree } from '../config/manifest.js'
import { lockfileProblem, lockfileRefused } from './lockfile.js'

export interface InstallInputs {
  lockfile: string
  /** package.json's text */
  packageJson?: string
  /** the project's .npmrc (registry, scripts and fetch settings npm ci obeys) */
  npmrc?: string
}

/** package.json fields npm ci acts on: what it installs, and the root's install scripts it runs */
const INSTALL_FIELDS = ['dependencies', 'devDependencies', 'optionalDependencies', 'peerDependencies', 'peerDependenciesMeta', 'bundleDependencies', 'bundledDependencies', 'overrides', 'workspaces', 'engines', 'os', 'cpu']
const INSTALL_SCRIPTS = ['preinstall', 'install', 'postinstall', 'prepublish', 'preprepare', 'prepare', 'postprepare']

const installFields = (text: string | undefined): string => {
  if (text === undefined) return ''
  const pkg = parseJsonObject(text)
  if (!pkg) return text
  const scripts = pkg['scripts']
  const script = (k: string): unknown =>
    typeof scripts === 'object' && scripts !== null && !Array.isArray(scripts) ? (scripts as Record<string, unknown>)[k] : undefined
  return JSON.stringify([INSTALL_FIELDS.map(k => pkg[k] ?? null), INSTALL_SCRIPTS.map(k => script(k) ?? null)])
}

/** What npm ci reads, in the order the install key has always hashed it. */
const hashInstallInputs = (i: InstallInputs) =>
  createHash('sha256').update(i.lockfile).update(`\0${installFields(i.packageJson)}\0${i.npmrc ?? ''}`)

/**
 * Identity of an install: what npm ci reads and the runtime the native modules were built for.
 * The lockfile alone is not enough: a commit that adds a dependency to package.json only (npm ci
 * would refuse it as out of sync) or changes an install script would reuse the old node_modules.
 */
export const installKey = (i: InstallInputs): string =>
  hashInstallInputs(i)
    .update(`\0${process.versions.node}\0${process.versions.modules}\0${process.platform}\0${process.arch}`)
    .digest('hex')

/** The install inputs alone (no runtime): one part of the release cache key (releases/cache-key.ts). */
export const installInputsDigest = (i: InstallInputs): string => hashInstallInputs(i).digest('hex')

/** bounds of what root reads from the release (core/untrusted-files.ts): far above real files */
const MAX_BYTES = { 'package-lock.json': 64 * 1024 * 1024, 'package.json': 4 * 1024 * 1024, '.npmrc': 1024 * 1024 }

/**
 * What npm ci reads in the service directory `servicePath` of a release, read by root as files of
 * the service user, never through a link; undefined without a lockfile. Read once, before any
 * code of the release runs (npm's install scripts, the build could rewrite them afterwards).
 */
export const readInstallInputs = async (repo: RepoTree, servicePath: string): Promise<InstallInputs | undefined> => {
  const read = (name: keyof typeof MAX_BYTES) => readUntrusted({ dir: repo.dir, rel: join(servicePath, name), owner: repo.owner }, MAX_BYTES[name])
  const lockfile = await read('package-lock.json')
  if (lockfile === undefined) return undefined
  const [packageJson, npmrc] = await Promise.all([read('package.json'), read('.npmrc')])
  return { lockfile, ...(packageJson === undefined ? {} : { packageJson }), ...(npmrc === undefined ? {} : { npmrc }) }
}

export const readInstallKey = async (repo: RepoTree, servicePath: string): Promise<string | undefined> => {
  const inputs = await readInstallInputs(repo, servicePath)
  return inputs && installKey(inputs)
}

export interface NpmCiInput {
  exec: Exec
  dir: string
  /** the lockfile's text (readInstallInputs), checked before npm runs; undefined: there is none */
  lockfile: string | undefined
  home: string
  user: { uid: number; gid: number } | undefined
  timeoutMs: number
  onLine: (stream: 'stdout' | 'stderr', line: string) => void
}

export const npmCi = async (i: NpmCiInput): Promise<void> => {
  const problem = lockfileProblem(i.lockfile, i.dir)
  if (problem) throw problem
  const r = await i.exec.run('npm', ['ci', '--no-audit', '--no-fund', '--no-update-notifier'], {
    cwd: i.dir,
    env: {
      PATH: `${join(process.execPath, '..')}:/usr/local/bin:/usr/bin:/bin`,
      HOME: i.home,
      npm_config_cache: join(i.home, '.npm'),
      npm_config_update_notifier: 'false',
      LANG: 'C.UTF-8',
      CI: 'true',
    },
    timeoutMs: i.timeoutMs,
    ...(i.user ?? {}),
    onLine: i.onLine,
  })
  if (r.exitCode !== 0) {
    // npm ci runs without the secrets in its environment; the run report scrubs it all the same
    const evidence = outputEvidence('npm', 'npm ci', r)
    if (r.timedOut) {
      throw new AgentError(`npm ci timed out after ${Math.round(i.timeoutMs / 1000)} s in ${i.dir}`, {
        code: 'NPM_CI_TIMEOUT',
        remedy: 'raise BOOTSTRAP_INSTALL_TIMEOUT or check the registry is reachable',
        retryable: true,
        evidence,
      })
    }
    const text = r.stderr || r.stdout
    const refused = lockfileRefused(text, i.dir)
    if (refused) {
      refused.evidence.push(...evidence)
      throw refused
    }
    const network = NETWORK_CODE.exec(text)?.[1]
    throw new AgentError(
      network
        ? `npm ci could not fetch packages (${network}) in ${i.dir}:\n${npmErrorSummary(text)}`
        : `npm ci failed (exit ${r.exitCode}) in ${i.dir}:\n${npmErrorSummary(text)}`,
      network
        ? {
          code: 'NPM_REGISTRY_UNREACHABLE',
          remedy: 'check that the instance can reach the npm registry (the registry in .npmrc, DNS, NAT or proxy, credentials), then run again',
          retryable: true,
          evidence,
        }
        : { code: 'NPM_CI_FAILED', remedy: 'run npm ci locally to see why (a dependency or an install script), fix package.json, package-lock.json or the script, and push a new commit', evidence },
    )
  }
}

/** npm's code for a failed fetch: a network error, or an HTTP 5xx / 429 from the registry */
const NETWORK_CODE = /^npm (?:error|ERR!) code (ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|ENETDOWN|EPIPE|ERR_SOCKET_TIMEOUT|FETCH_ERROR|E5\d\d|E429)\b/m

/**
 * What npm said went wrong: its `npm error` lines from the first one on, without stack frames and
 * the pointer to its debug log (the last lines, which a plain tail would show instead).
 */
export const npmErrorSummary = (text: string, max = 8): string => {
  const all = text.split('\n').map(l => l.trimEnd()).filter(l => l !== '')
  // npm appends its usage text to some errors (EUSAGE): it says nothing about this failure
  const usage = all.findIndex(l => /^npm (?:error|ERR!) (?:Clean install a project|Usage:)$/.test(l))
  const lines = usage >= 0 ? all.slice(0, usage) : all
  const npm = lines.filter(l => /^npm (?:error|ERR!)/.test(l) && !/^npm (?:error|ERR!)\s+at /.test(l) && !/A complete log of this run/.test(l))
  const picked = npm.length > 0 ? npm.slice(0, max) : lines.slice(-max)
  return picked.join('\n')
}

/**
 * Reuse: the previous good release's node_modules (same install key) as a tree of hard links
 * (`cp -al`), run as the service user so the new directories are owned by it. Linking 2,000
 * files takes ~0.15 s where copying their bytes took 0.13-1.7 s (ext4, the bench fixture, the
 * spread is I/O load). Each release keeps a real node_modules directory of its own, so
 * rollback, pruning (a link count, not a shared directory) and module resolution are as with a
 * copy. What is shared is file *contents*: a service that rewrites a file inside node_modules in
 * place would change it for the other releases too (creating, deleting or renaming files does
 * not). Trade-offs and the alternatives measured: docs/dependency-reuse.md.
 */
export const copyNodeModules = async (exec: Exec, from: { dir: string; path: string }, toDir: string, user: { uid: number; gid: number } | undefined): Promise<boolean> => {
  // whether there is one, asked without following a link in the service user's tree
  if (!(await lstatBeneath(from.dir, join(from.path, 'node_modules')))?.isDirectory()) return false
  const r = await exec.run('cp', ['-al', '--', join(from.dir, from.path, 'node_modules'), join(toDir, 'node_modules')], {
    env: { PATH: '/usr/bin:/bin', LANG: 'C' },
    timeoutMs: 300_000,
    ...(user ?? {}),
  })
  if (r.exitCode !== 0) {
    throw new AgentError(`copying node_modules from ${from.dir} failed: ${r.stderr.trim()}`, { code: 'INSTALL_REUSE_FAILED', remedy: 'check free disk space; the next run falls back to npm ci' })
  }
  return true
}
