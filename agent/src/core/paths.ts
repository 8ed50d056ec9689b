/**
 * Where everything lives, under the configured root (`/` on an instance, a sandbox in local
 * mode). Pure: the service name was validated before it reaches here, so it cannot escape.
 */
import { join } from 'node:path'

export interface Paths {
  root: string
  etcDir: string
  agentEnv: string
  envDir: string
  envFile: string
  serviceDir: string
  releasesDir: string
  current: string
  ecosystem: string
  appLogDir: string
  stateDir: string
  /** the agent's records of the service's releases (releases/records.ts): root's, not in the releases */
  releaseRecords: string
  stateFile: string
  lockFile: string
  /** root only (0700): release cache archives on their way to or from S3 */
  cacheWorkDir: string
  /** home of the service user's tools: PM2_HOME is <home>/.pm2, the npm cache <home>/.npm */
  home: string
  pm2Home: string
  logDir: string
  logFile: string
}

export const agentEnvPath = (root: string): string => join(root, 'etc/bootstrap-agent/agent.env')
export const stateFilePath = (root: string): string => join(root, 'var/lib/bootstrap-agent/state.json')
export const lockFilePath = (root: string): string => join(root, 'var/lib/bootstrap-agent/lock')

export const pathsFor = (root: string, service: string): Paths => {
  const etcDir = join(root, 'etc/bootstrap-agent')
  const serviceDir = join(root, 'srv', service)
  const stateDir = join(root, 'var/lib/bootstrap-agent')
  const home = join(stateDir, 'home')
  const logDir = join(root, 'var/log/bootstrap-agent')
  return {
    root,
    etcDir,
    agentEnv: agentEnvPath(root),
    envDir: join(etcDir, 'env'),
    envFile: join(etcDir, 'env', `${service}.env`),
    serviceDir,
    releasesDir: join(serviceDir, 'releases'),
    current: join(serviceDir, 'current'),
    ecosystem: join(serviceDir, 'ecosystem.json'),
    appLogDir: join(serviceDir, 'logs'),
    stateDir,
    releaseRecords: join(stateDir, 'releases', service),
    stateFile: stateFilePath(root),
    lockFile: lockFilePath(root),
    cacheWorkDir: join(stateDir, 'release-cache'),
    home,
    pm2Home: join(home, '.pm2'),
    logDir,
    logFile: join(logDir, 'agent.log'),
  }
}
