/**
 * The release artifact for integration tests: built by the real `npm run package` script (reused
 * when its inputs are unchanged), extracted like an instance would, and its launcher run with a
 * clean environment whose PATH has Node but never this checkout's node_modules.
 */
import { spawn, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { REPO } from './sandbox.js'

export interface Release {
  tarball: string
  fileName: string
  sha256: string
  /** the .sha256 file (sha256sum format) */
  checksumFile: string
  version: string
}

export const buildRelease = (): Release => {
  const r = spawnSync(process.execPath, [join(REPO, 'scripts/package.mjs'), '--reuse'], { cwd: REPO, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`npm run package failed (exit ${r.status}):\n${r.stdout}${r.stderr}`)
  const version = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version
  const fileName = `bootstrap-agent-${version}.tar.gz`
  const tarball = join(REPO, '.cache/release', fileName)
  const checksumFile = `${tarball}.sha256`
  const sha256 = readFileSync(checksumFile, 'utf8').split(' ')[0] ?? ''
  return { tarball, fileName, sha256, checksumFile, version }
}

/** PATH for processes started from the artifact: this Node, the system, nothing of the repo. */
export const cleanPath = `${dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`

export interface ProcResult {
  code: number | null
  stdout: string
  stderr: string
}

/**
 * Runs a program with exactly `env` (through `env -i`: tap puts its NODE_OPTIONS hooks into every
 * child's environment, even an explicit one, and they would follow the program into PM2).
 */
export const runClean = (file: string, args: readonly string[], env: Record<string, string>, opts: { cwd?: string } = {}): Promise<ProcResult> =>
  new Promise(resolve => {
    const child = spawn('/usr/bin/env', ['-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), file, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', c => (stdout += c))
    child.stderr.on('data', c => (stderr += c))
    child.on('close', code => resolve({ code, stdout, stderr }))
  })
