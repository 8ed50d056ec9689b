/**
 * Who runs repo code. When the agent is root, `npm ci`, builds, PM2 and the services run as an
 * unprivileged service user (created if missing: a fresh instance has none). When the agent is
 * not root (a laptop), everything runs as the invoking user.
 */
import { userInfo } from 'node:os'
import { AgentError, ConfigError } from './errors.js'
import type { Exec } from './exec.js'

export interface ServiceUser {
  name: string
  uid: number
  gid: number
  /** uid/gid to pass to child processes, chown, ...: undefined when no switch is needed */
  switchTo: { uid: number; gid: number } | undefined
  created: boolean
}

const SYS_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' }

const lookup = async (exec: Exec, name: string): Promise<{ uid: number; gid: number } | undefined> => {
  const r = await exec.run('getent', ['passwd', name], { env: SYS_ENV, timeoutMs: 10_000 })
  if (r.exitCode !== 0) return undefined
  const f = r.stdout.trim().split(':')
  const uid = Number(f[2])
  const gid = Number(f[3])
  return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : undefined
}

export const ensureServiceUser = async (exec: Exec, name: string, opts: { create: boolean }): Promise<ServiceUser> => {
  const me = userInfo()
  if (me.uid !== 0) {
    return { name: me.username, uid: me.uid, gid: me.gid, switchTo: undefined, created: false }
  }
  let found = await lookup(exec, name)
  let created = false
  if (!found && opts.create) {
    const r = await exec.run(
      'useradd',
      ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', name],
      { env: SYS_ENV, timeoutMs: 30_000 },
    )
    // exit 9: created concurrently by another process, which is fine
    if (r.exitCode !== 0 && r.exitCode !== 9) {
      throw new AgentError(`could not create service user "${name}": useradd exited ${r.exitCode}: ${r.stderr.trim()}`, {
        code: 'SERVICE_USER_FAILED',
        remedy: `create the user yourself (useradd --system ${name}) or set BOOTSTRAP_SERVICE_USER to an existing unprivileged user`,
      })
    }
    found = await lookup(exec, name)
    created = true
  }
  if (!found) {
    throw new ConfigError(`service user "${name}" does not exist`, `create it (useradd --system ${name}) or run "bootstrap-agent run" which creates it`, 'SERVICE_USER_MISSING')
  }
  if (found.uid === 0) throw new ConfigError(`service user "${name}" has uid 0`, 'repo code never runs as root: name an unprivileged user', 'SERVICE_USER_ROOT')
  return { name, uid: found.uid, gid: found.gid, switchTo: found, created }
}
