/**
 * Test fixture: a Debian machine with systemd as PID 1, booted by systemd-nspawn from the rootfs
 * scripts/boot-setup.mjs caches, as the boot tier (test/boot/) needs it.
 *
 * - Its disk is an overlay: the cached rootfs as the read-only lower layer, this container's
 *   writes in its own upper layer. Every container starts from the same pristine image, the image
 *   is never changed, and the merged tree (`root`) is the container's whole disk, readable from
 *   the host while it runs and after it stopped. It survives reboots: a reboot is a new nspawn on
 *   the same overlay.
 * - `--register=no --keep-unit`: these machines have no systemd as PID 1 and no system D-Bus, so
 *   nspawn must neither register with machined nor ask for a scope unit. `--console=pipe`: no TTY.
 *   No --private-network: the container shares the host's network namespace and reaches the test
 *   servers on 127.0.0.1. `--uuid`: one machine id per container, the same across its reboots (the
 *   persistent journal lives under it).
 * - cgroup layout: `unified` sets SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 (pure cgroup v2, as Amazon
 *   Linux 2023 and Ubuntu 22.04+); `hybrid` leaves it unset, and the container gets the host's v1/v2
 *   hybrid. `layout()` reads what the container really got.
 * - Commands run inside through nsenter into the container's PID 1 namespaces, with exactly the
 *   environment given (tap's NODE_OPTIONS hooks must not follow them in).
 *
 * `destroy()` (register it with t.teardown) halts the container, unmounts the overlay and removes
 * its directory; a process exit without teardown (a timeout) still kills and unmounts.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { REPO } from './sandbox.js'
import { runClean, type ProcResult } from './release.js'

export type CgroupLayout = 'unified' | 'hybrid'

export interface BootPrerequisites {
  rootfs: string
  packages: string[]
  nodeTarball: string
  nodeTarballName: string
  nodeSha256: string
  nodeVersion: string
}

const PREREQUISITES = join(REPO, '.cache/boot/prerequisites.json')

/** What scripts/boot-setup.mjs built; an error that says how to get it otherwise. */
export const bootPrerequisites = (): BootPrerequisites => {
  const missing = 'run `node scripts/test-setup.mjs` (npm test does): it installs systemd-container and debootstrap and builds the rootfs and the Node tarball'
  if (!existsSync(PREREQUISITES)) throw new Error(`the boot tier's prerequisites are missing (${PREREQUISITES}): ${missing}`)
  const p = JSON.parse(readFileSync(PREREQUISITES, 'utf8')) as BootPrerequisites
  for (const f of [p.rootfs, p.nodeTarball]) if (!existsSync(f)) throw new Error(`${f} is missing: ${missing}`)
  for (const tool of ['/usr/bin/systemd-nspawn', '/usr/bin/nsenter']) if (!existsSync(tool)) throw new Error(`${tool} is missing: ${missing}`)
  return p
}

/** The environment of every command run inside: the system's PATH, nothing of the test's. */
const INSIDE_ENV = { PATH: '/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', HOME: '/root' }
/** nspawn's exit status when the container rebooted (systemd-nspawn(1)) */
const REBOOTED = 133

export interface Container {
  name: string
  /** the container's / on the host (the merged overlay) */
  root: string
  /** a path inside the container, as seen from the host */
  path(p: string): string
  /** Date.now() when the current boot's nspawn started */
  startedAt: number
  /** boots; resolves once systemd answers inside (the boot itself goes on) */
  start(): Promise<void>
  /** argv inside the container, as root, with a clean environment (plus `env`) */
  exec(argv: string[], env?: Record<string, string>): Promise<ProcResult>
  /** `systemctl show UNIT -p A -p B`, as a map */
  show(unit: string, props: string[]): Promise<Record<string, string>>
  /** what the container got: a cgroup2 root (unified), or v1 hierarchies beside a v2 one (hybrid) */
  layout(): Promise<CgroupLayout | 'legacy'>
  /** `systemctl reboot` inside; resolves when the next boot's systemd answers */
  reboot(): Promise<void>
  /** orderly halt (SIGTERM to nspawn: systemd shuts down); resolves when nspawn exited */
  stop(): Promise<void>
  /** stops (killing it when it does not halt), unmounts the overlay, removes the directory */
  destroy(): Promise<void>
  /** what nspawn printed (the console), for failure messages */
  console(): string
}

const mountinfo = () => readFileSync('/proc/self/mountinfo', 'utf8')
const isMounted = (path: string) => mountinfo().split('\n').some(l => l.split(' ')[4] === path)

/** The host pid of the container's PID 1: nspawn's child whose innermost pid is 1. */
const findInit = (nspawnPid: number): number | undefined => {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const status = readFileSync(`/proc/${name}/status`, 'utf8')
      const ppid = /^PPid:\s+(\d+)$/m.exec(status)?.[1]
      const nspid = /^NSpid:\s+([\d\s]+)$/m.exec(status)?.[1]?.trim().split(/\s+/)
      if (Number(ppid) === nspawnPid && nspid !== undefined && nspid.length > 1 && nspid[nspid.length - 1] === '1') return Number(name)
    } catch {
      // the process ended while we looked
    }
  }
  return undefined
}

export const createContainer = (o: { image: string; dir: string; name: string; layout: CgroupLayout }): Container => {
  const layers = { upper: join(o.dir, 'upper'), work: join(o.dir, 'work'), root: join(o.dir, 'root') }
  for (const d of Object.values(layers)) mkdirSync(d, { recursive: true })
  const mount = spawnSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${o.image},upperdir=${layers.upper},workdir=${layers.work}`, layers.root], { encoding: 'utf8' })
  if (mount.status !== 0) throw new Error(`cannot mount the container's overlay on ${layers.root}: ${mount.stderr}`)
  const uuid = randomUUID()
  let child: ChildProcess | undefined
  let exited: Promise<number | null> = Promise.resolve(null)
  let init: number | undefined
  let output = ''

  // the last resort when the test process ends without its teardown (a timeout, an uncaught error)
  const emergency = () => {
    for (const pid of [init, child?.pid]) if (pid !== undefined) spawnSync('kill', ['-KILL', String(pid)])
    if (isMounted(layers.root)) spawnSync('umount', ['-l', layers.root])
  }
  process.on('exit', emergency)

  const c: Container = {
    name: o.name,
    root: layers.root,
    path: p => join(layers.root, p),
    startedAt: 0,
    async start() {
      if (child && child.exitCode === null) throw new Error(`container ${o.name} is already running`)
      c.startedAt = Date.now()
      init = undefined
      const env: Record<string, string> = { PATH: INSIDE_ENV.PATH, ...(o.layout === 'unified' ? { SYSTEMD_NSPAWN_UNIFIED_HIERARCHY: '1' } : {}) }
      const args = ['--quiet', '--boot', '--register=no', '--keep-unit', '--console=pipe', `--directory=${layers.root}`, `--machine=${o.name}`, `--uuid=${uuid}`]
      const proc = spawn('/usr/bin/env', ['-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), 'systemd-nspawn', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
      child = proc
      const keep = (b: Buffer) => (output = (output + b.toString()).slice(-20_000))
      proc.stdout?.on('data', keep)
      proc.stderr?.on('data', keep)
      exited = new Promise(resolve => proc.once('exit', code => resolve(code)))
      // a bound only, so a container that never comes up fails the test instead of hanging it
      for (const end = Date.now() + 120_000; ; await sleep(100)) {
        if (proc.exitCode !== null) throw new Error(`systemd-nspawn exited (${proc.exitCode}) before the container's systemd answered:\n${output}`)
        init ??= proc.pid === undefined ? undefined : findInit(proc.pid)
        if (init !== undefined) {
          const state = (await c.exec(['systemctl', 'is-system-running'])).stdout.trim()
          if (['initializing', 'starting', 'running', 'degraded', 'maintenance'].includes(state)) return
        }
        if (Date.now() > end) throw new Error(`container ${o.name}: systemd did not answer within 2 minutes:\n${output}`)
      }
    },
    async exec(argv, env = {}) {
      if (init === undefined) throw new Error(`container ${o.name} is not running`)
      return runClean('/usr/bin/nsenter', [`--target=${init}`, '--all', '--', ...argv], { ...INSIDE_ENV, ...env })
    },
    async show(unit, props) {
      const r = await c.exec(['systemctl', 'show', unit, ...props.flatMap(p => ['-p', p])])
      return Object.fromEntries(r.stdout.split('\n').filter(l => l.includes('=')).map(l => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]))
    },
    async layout() {
      const fs = (await c.exec(['stat', '-f', '-c', '%T', '/sys/fs/cgroup'])).stdout.trim()
      if (fs === 'cgroup2fs') return 'unified'
      return (await c.exec(['stat', '-f', '-c', '%T', '/sys/fs/cgroup/unified'])).stdout.trim() === 'cgroup2fs' ? 'hybrid' : 'legacy'
    },
    async reboot() {
      await c.exec(['systemctl', 'reboot'])
      const code = await exited
      if (code !== REBOOTED) throw new Error(`container ${o.name}: nspawn exited ${code} on reboot, expected ${REBOOTED}:\n${output}`)
      await c.start()
    },
    async stop() {
      if (!child || child.exitCode !== null) return
      child.kill('SIGTERM')
      const code = await exited
      if (code !== 0) throw new Error(`container ${o.name}: nspawn exited ${code} on halt:\n${output}`)
    },
    async destroy() {
      if (child && child.exitCode === null) {
        child.kill('SIGTERM')
        const timer = setTimeout(() => emergency(), 60_000)
        await exited
        clearTimeout(timer)
      }
      if (isMounted(layers.root)) {
        const r = spawnSync('umount', [layers.root], { encoding: 'utf8' })
        if (r.status !== 0) spawnSync('umount', ['-l', layers.root])
      }
      process.off('exit', emergency)
      rmSync(o.dir, { recursive: true, force: true })
    },
    console: () => output,
  }
  return c
}
