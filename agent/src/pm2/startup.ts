/**
 * PM2's own unit, bootstrap-pm2.service: where PM2's daemon and every service live, and what
 * brings them back at reboot (`pm2 resurrect` of what the start phase saved with `pm2 save`).
 * The same design as `pm2 startup systemd` (a Type=forking unit per user, PIDFile in PM2_HOME),
 * written by the agent itself because only the agent knows the service user, PM2_HOME and the
 * exact node and PM2 it runs (the unit must drive the same PM2 the agent's CLI calls talk to).
 *
 * Why the agent starts the daemon through systemctl rather than letting `pm2 start` fork it:
 * a daemon forked by the agent stays in the caller's control group and mount namespace:
 * bootstrap-agent.service (oneshot, hardened), or amazon-ssm-agent.service for an SSM run. A
 * stop or restart of that unit would kill every service (KillMode=control-group), and the
 * services would run inside the agent's sandbox. Started here, the daemon and its apps belong to
 * bootstrap-pm2.service whoever ran the agent.
 *
 * Applies only where it can: agent root `/`, running as root, systemd is PID 1 (sd_booted(): the
 * directory /run/systemd/system exists). Elsewhere (local sandboxes, containers, laptops) PM2
 * forks its daemon as before and nothing is written.
 */
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { writeFileAtomic } from '../core/atomic-write.js'
import { isRefused } from '../core/beneath.js'
import { readUntrusted } from '../core/untrusted-files.js'
import { pm2File, type Pm2Home } from './home.js'
import { AgentError, errnoCode } from '../core/errors.js'
import type { Exec } from '../core/exec.js'
import type { ServiceUser } from '../core/service-user.js'

export const PM2_UNIT = 'bootstrap-pm2.service'

export interface Pm2UnitSpec {
  user: string
  /** the node binary and PM2's CLI script the agent itself uses (pm2/cli.ts) */
  node: string
  pm2Bin: string
  /** HOME and PM2_HOME of the service user's tools (core/paths.ts) */
  home: string
  pm2Home: string
}

/** systemd would split an unquoted value at spaces and expand % specifiers: refuse those paths */
const SAFE = /^\/[A-Za-z0-9._/+@-]*$/

const checked = (what: string, value: string): string => {
  if (!SAFE.test(value)) {
    throw new AgentError(`cannot write ${PM2_UNIT}: ${what} ${JSON.stringify(value)} contains characters a unit file cannot carry unquoted`, {
      code: 'PM2_UNIT_PATH',
      remedy: `install node and the agent under paths made of letters, digits and . _ / + @ - (${what})`,
    })
  }
  return value
}

/** The unit, a pure function of the spec (a test runs systemd-analyze verify on its output). */
export const renderPm2Unit = (u: Pm2UnitSpec): string => {
  const node = checked('the node binary', u.node)
  const pm2 = `${node} ${checked('the PM2 CLI', u.pm2Bin)}`
  const home = checked('the service user home', u.home)
  const pm2Home = checked('PM2_HOME', u.pm2Home)
  if (!/^[a-z_][a-z0-9_-]{0,30}$/.test(u.user)) {
    throw new AgentError(`cannot write ${PM2_UNIT}: user ${JSON.stringify(u.user)}`, { code: 'PM2_UNIT_PATH', remedy: 'name a valid service user' })
  }
  return `# Written by bootstrap-agent (agent/src/pm2/startup.ts) and rewritten when it changes: edit
# that, not this. PM2's daemon and every service it runs live in this unit's control group, so
# stopping or restarting bootstrap-agent.service (a oneshot) never touches them. At boot it brings
# back what the agent last saved (\`pm2 save\` after every start or reload): the last good release.
[Unit]
Description=PM2 for the services of bootstrap-agent (user ${u.user})
Wants=network-online.target
After=network-online.target
# the last good release serves before the agent converges (the agent starts this unit itself
# too; with this order and not the reverse, that start cannot deadlock on the agent's own job)
Before=bootstrap-agent.service

[Service]
# \`pm2 resurrect\` forks the daemon and exits; the daemon writes its pid to PM2_HOME/pm2.pid
Type=forking
User=${u.user}
WorkingDirectory=${home}
# the same environment the agent gives PM2 (pm2/cli.ts pm2Env): PM2 copies its environment into
# every app's stored env, so nothing else may be in it
Environment=PATH=${dirname(node)}:/usr/local/bin:/usr/bin:/bin
Environment=HOME=${home}
Environment=PM2_HOME=${pm2Home}
Environment=PM2_DISABLE_VERSION_CHECK=true
Environment=LANG=C.UTF-8
PIDFile=${pm2Home}/pm2.pid
# The first start comes before anything was saved (PM2_HOME does not even exist yet): a fresh
# instance with no app to bring back is no error, but \`pm2 resurrect\` without a dump logs
# "[ERROR] ... DUMP file doesn't exist". An empty list instead (only when neither the dump nor
# PM2's backup of it exists), written as the service user like everything in PM2_HOME; \`pm2 save\`
# replaces it. '-': should it fail, the start goes on (and PM2 logs its error as before).
ExecStartPre=-/bin/sh -c 'test -e ${pm2Home}/dump.pm2 || test -e ${pm2Home}/dump.pm2.bak || (mkdir -p ${pm2Home} && echo "[]" > ${pm2Home}/dump.pm2)'
ExecStart=${pm2} resurrect
ExecReload=${pm2} reload all
ExecStop=${pm2} kill
# the daemon died: start it again, which resurrects the saved apps
Restart=on-failure
# Node servers hold a socket per connection; 1024 (the usual soft limit) is too few
LimitNOFILE=65536
# repo code never gains privileges (invariant 5): no setuid binary, no file capability
NoNewPrivileges=yes

[Install]
WantedBy=multi-user.target
`
}

export interface Pm2StartupOptions {
  exec: Exec
  /** the agent's root; only `/` is a real instance */
  root: string
  user: ServiceUser | undefined
  spec: Omit<Pm2UnitSpec, 'user'>
  /** stops a PM2 daemon that runs outside the unit (the Pm2 seam's kill) */
  killStrayDaemon: () => Promise<void>
  /** /etc/systemd/system */
  unitDir?: string
  /** /run/systemd/system: exists when systemd is PID 1 */
  bootedDir?: string
  /** process.getuid() */
  uid?: number
}

const SYS_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' }

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    // EPERM: it exists, and belongs to someone else
    return errnoCode(e) === 'EPERM'
  }
}

/** The pid in PM2_HOME's pid file, read as the service user's file (pm2/home.ts); a file that is
 * not one (a link, a FIFO) names no daemon. */
const pidFrom = async (h: Pm2Home): Promise<number | undefined> => {
  const text = await readUntrusted(pm2File(h, 'pm2.pid'), 64).catch((e: unknown) => {
    if (isRefused(e)) return undefined
    throw e
  })
  const pid = Number((text ?? '').trim())
  return Number.isInteger(pid) && pid > 0 ? pid : undefined
}

/**
 * Installs (or updates), enables and starts bootstrap-pm2.service, idempotently. Returns one line
 * for the phase's detail, or undefined in a sandbox (root other than /), where there is nothing
 * to say. A change to an active unit takes effect at its next start (a restart here would stop
 * every service).
 */
export const ensurePm2Startup = async (o: Pm2StartupOptions): Promise<string | undefined> => {
  const uid = o.uid ?? process.getuid?.()
  if (o.root !== '/') return undefined
  if (uid !== 0 || !o.user?.switchTo) return `${PM2_UNIT} not installed: the agent is not root`
  if (!existsSync(o.bootedDir ?? '/run/systemd/system')) return `${PM2_UNIT} not installed: systemd is not running`
  const systemctl = async (...args: string[]) => o.exec.run('systemctl', args, { env: SYS_ENV, timeoutMs: 180_000 })
  const must = async (...args: string[]) => {
    const r = await systemctl(...args)
    if (r.exitCode !== 0) {
      throw new AgentError(`systemctl ${args.join(' ')} failed (exit ${r.timedOut ? 'timeout' : r.exitCode}): ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}`, {
        code: 'PM2_UNIT_FAILED',
        remedy: `see journalctl -u ${PM2_UNIT} and systemctl status ${PM2_UNIT}`,
      })
    }
  }
  const file = join(o.unitDir ?? '/etc/systemd/system', PM2_UNIT)
  const text = renderPm2Unit({ ...o.spec, user: o.user.name })
  let previous: string | undefined
  try {
    previous = await readFile(file, 'utf8')
  } catch (e) {
    if (errnoCode(e) !== 'ENOENT') throw e
  }
  const done: string[] = []
  if (previous !== text) {
    await writeFileAtomic(file, text, { mode: 0o644 })
    await must('daemon-reload')
    done.push(previous === undefined ? 'installed' : 'updated')
  }
  if ((await systemctl('is-enabled', '--quiet', PM2_UNIT)).exitCode !== 0) {
    await must('enable', '--quiet', PM2_UNIT)
    done.push('enabled')
  }
  if ((await systemctl('is-active', '--quiet', PM2_UNIT)).exitCode !== 0) {
    // a daemon forked outside the unit (an older agent, a manual pm2 call): its pid file would
    // make the unit's start fail; stop it, the unit's `pm2 resurrect` brings the apps back
    const stray = await pidFrom({ home: o.spec.home, pm2Home: o.spec.pm2Home, owner: o.user.uid })
    if (stray !== undefined && alive(stray)) {
      await o.killStrayDaemon()
      done.push(`stopped a PM2 daemon outside the unit (pid ${stray})`)
    }
    await must('start', PM2_UNIT)
    done.push('started')
  } else if (previous !== undefined && previous !== text) {
    done.push('the change applies at its next start')
  }
  return `${PM2_UNIT}: ${done.length > 0 ? done.join(', ') : 'enabled and active'}`
}
