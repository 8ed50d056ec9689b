/**
 * Pure: ServiceSpec -> the PM2 ecosystem (JSON) for the service. Paths go through the `current`
 * symlink, so the file does not change between releases and a reload after a switch (or a
 * rollback) starts whatever `current` points to.
 *
 * Secrets are never in here: PM2 keeps an app's env in plain text (dump.pm2, `pm2 env`, jlist).
 * Processes load them themselves: Node via `--import <env-preload>`, other programs through the
 * run-with-env wrapper, both reading the file named by BOOTSTRAP_ENV_FILE.
 */
import { join } from 'node:path'
import type { ServiceSpec } from '../config/manifest.js'

export interface EcosystemInput {
  spec: ServiceSpec
  current: string
  envFile: string
  appLogDir: string
  /** absolute path of the compiled env-preload module */
  preload: string
  /** absolute path of the compiled run-with-env wrapper */
  wrapper: string
  npmBin: string
}

export interface Pm2App {
  name: string
  cwd: string
  script: string
  args?: string[]
  interpreter?: string
  node_args?: string[]
  exec_mode: 'fork' | 'cluster'
  instances: number | 'max'
  env: Record<string, string>
  out_file: string
  error_file: string
  merge_logs: boolean
  time: boolean
  kill_timeout: number
  autorestart: boolean
  max_restarts: number
  min_uptime: number
}

export const buildEcosystem = (i: EcosystemInput): { apps: Pm2App[] } => {
  const { spec } = i
  const cwd = spec.path === '.' ? i.current : join(i.current, spec.path)
  const base = {
    name: spec.name,
    cwd,
    env: { ...spec.env, BOOTSTRAP_ENV_FILE: i.envFile, BOOTSTRAP_SERVICE: spec.name },
    out_file: join(i.appLogDir, `${spec.name}-out.log`),
    error_file: join(i.appLogDir, `${spec.name}-error.log`),
    merge_logs: true,
    time: true,
    kill_timeout: spec.killTimeoutMs,
    autorestart: true,
    max_restarts: 10,
    min_uptime: 2000,
  }
  const preloadArgs = ['--import', i.preload]
  switch (spec.start.kind) {
    case 'script':
      return {
        apps: [{
          ...base,
          script: join(cwd, spec.start.script),
          node_args: [...preloadArgs, ...spec.nodeArgs],
          exec_mode: spec.instances === 1 ? 'fork' : 'cluster',
          instances: spec.instances,
        }],
      }
    case 'npm':
      return {
        apps: [{ ...base, script: i.wrapper, args: [i.npmBin, 'run', spec.start.script], node_args: preloadArgs, exec_mode: 'fork', instances: 1 }],
      }
    case 'command':
      return {
        apps: [{ ...base, script: i.wrapper, args: spec.start.argv, node_args: preloadArgs, exec_mode: 'fork', instances: 1 }],
      }
    case 'static':
      // PM2's built-in static server; a static site has no secrets to load
      return {
        apps: [{
          ...base,
          script: 'serve',
          env: {
            ...base.env,
            PM2_SERVE_PATH: join(cwd, spec.start.dir),
            PM2_SERVE_PORT: String(spec.start.port),
            PM2_SERVE_SPA: String(spec.start.spa),
            PM2_SERVE_HOMEPAGE: '/index.html',
          },
          exec_mode: 'fork',
          instances: 1,
        }],
      }
  }
}
