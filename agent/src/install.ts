/**
 * Dependencies of a release: `npm ci` as the service user, no shell, bounded by a timeout, output
 * streamed to the log. Skipped when a previous good release was installed from the same lockfile
 * with the same Node ABI: its node_modules is copied instead (no lifecycle script runs again).
 */
import { createHash } from 'node:crypto'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { AgentError, ConfigError, errnoCode } from './errors.js'
import type { Exec } from './exec.js'

/** Identity of an install: the lockfile bytes and the runtime the native modules were built for. */
export const installKey = (lockfile: Buffer | string): string =>
  createHash('sha256')
    .update(lockfile)
    .update(`\0${process.versions.node}\0${process.versions.modules}\0${process.platform}\0${process.arch}`)
    .digest('hex')

export const readInstallKey = async (dir: string): Promise<string | undefined> => {
  try {
    return installKey(await readFile(join(dir, 'package-lock.json')))
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return undefined
    throw e
  }
}

export interface NpmCiInput {
  exec: Exec
  dir: string
  home: string
  user: { uid: number; gid: number } | undefined
  timeoutMs: number
  onLine: (stream: 'stdout' | 'stderr', line: string) => void
}

export const npmCi = async (i: NpmCiInput): Promise<void> => {
  if (!(await stat(join(i.dir, 'package-lock.json')).catch(() => undefined))) {
    throw new ConfigError(`no package-lock.json in ${i.dir}`, 'commit package-lock.json (npm ci needs it for a reproducible install)', 'LOCKFILE_MISSING')
  }
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
    if (r.timedOut) {
      throw new AgentError(`npm ci timed out after ${Math.round(i.timeoutMs / 1000)} s in ${i.dir}`, {
        code: 'NPM_CI_TIMEOUT',
        remedy: 'raise BOOTSTRAP_INSTALL_TIMEOUT or check the registry is reachable',
        retryable: true,
      })
    }
    const text = r.stderr || r.stdout
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
        }
        : { code: 'NPM_CI_FAILED', remedy: 'fix package.json/package-lock.json (run npm ci locally) and push a new commit' },
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
  const lines = text.split('\n').map(l => l.trimEnd()).filter(l => l !== '')
  const npm = lines.filter(l => /^npm (?:error|ERR!)/.test(l) && !/^npm (?:error|ERR!)\s+at /.test(l) && !/A complete log of this run/.test(l))
  const picked = npm.length > 0 ? npm.slice(0, max) : lines.slice(-max)
  return picked.join('\n')
}

/** Reuse: copy the previous good release's node_modules (same install key) with `cp -a`, run as
 * the service user so the copy is owned by it (reflinks where the filesystem has them). */
export const copyNodeModules = async (exec: Exec, fromDir: string, toDir: string, user: { uid: number; gid: number } | undefined): Promise<boolean> => {
  const src = join(fromDir, 'node_modules')
  if (!(await stat(src).catch(() => undefined))) return false
  const r = await exec.run('cp', ['-a', '--reflink=auto', '--', src, join(toDir, 'node_modules')], {
    env: { PATH: '/usr/bin:/bin', LANG: 'C' },
    timeoutMs: 300_000,
    ...(user ?? {}),
  })
  if (r.exitCode !== 0) {
    throw new AgentError(`copying node_modules from ${fromDir} failed: ${r.stderr.trim()}`, { code: 'INSTALL_REUSE_FAILED', remedy: 'check free disk space; the next run falls back to npm ci' })
  }
  return true
}
