/**
 * The release archive worker for unit tests: the compiled one (test/helpers/compiled.ts), run as
 * the service user when the test runs as root, as the agent runs it, and through `env -i`: tap
 * puts its process-tracking hooks into every child's NODE_OPTIONS, even an explicit
 * environment's, and as the service user they fail writing into .tap/ at exit.
 */
import { execFileSync } from 'node:child_process'
import { userInfo } from 'node:os'
import { createExec, type Exec } from '../../agent/src/core/exec.js'
import type { WorkerOptions } from '../../agent/src/releases/archive-process.js'
import { compiled } from './compiled.js'

export const WORKER = compiled(['releases/archive-worker', 'releases/archive', 'releases/secret-scan', 'secrets/env-file'])

/** the service user when root, like the agent; else this user (no switch) */
export const SERVICE_USER: { uid: number; gid: number } | undefined = (() => {
  if (userInfo().uid !== 0) return undefined
  const f = execFileSync('getent', ['passwd', 'bootstrap-app'], { encoding: 'utf8' }).split(':')
  return { uid: Number(f[2]), gid: Number(f[3]) }
})()

const real = createExec()
export const cleanExec: Exec = {
  run: (file, args, opts) => real.run('/usr/bin/env', ['-i', ...Object.entries(opts.env).map(([k, v]) => `${k}=${v}`), file, ...args], opts),
}

export const workerOptions = (): WorkerOptions => ({ exec: cleanExec, user: SERVICE_USER, timeoutMs: 60_000, worker: WORKER })
