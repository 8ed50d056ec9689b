/**
 * The install phase's reuse of a previous good release's dependencies: hard links (the first test
 * opts in to a real `cp` child process), and `npm ci` when linking is refused or the key differs.
 * Exec and Pm2 are our own seams, faked elsewhere.
 */
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import t, { type Test } from 'tap'
import { createExec } from '../../../../agent/src/core/exec.js'
import type { Exec, RunOptions } from '../../../../agent/src/core/exec.js'
import { readInstallKey } from '../../../../agent/src/releases/install.js'
import { loadServiceSpec } from '../../../../agent/src/config/manifest.js'
import { pathsFor, type Paths } from '../../../../agent/src/core/paths.js'
import { install } from '../../../../agent/src/run/phases/install.js'
import type { Pm2 } from '../../../../agent/src/pm2/cli.js'
import { createScrubber } from '../../../../agent/src/secrets/redact.js'
import { markReleaseGood, recordRelease } from '../../../../agent/src/releases/records.js'
import { releaseId } from '../../../../agent/src/releases/releases.js'
import type { RunContext, Seams } from '../../../../agent/src/run/context.js'
import { resolveSettings } from '../../../../agent/src/config/settings.js'

const LOCK = '{"name":"app","lockfileVersion":3,"packages":{"":{"name":"app"}}}\n'

const unused = (what: string) => (): never => {
  throw new Error(`${what} used`)
}

const me = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 }

/** A release directory with package.json + lockfile; `good` ones carry the install key of `lock`. */
const release = async (paths: Paths, second: number, lock: string, good: boolean) => {
  const { serviceDir } = paths
  const id = releaseId(new Date(Date.UTC(2026, 10, 24, 5, 0, second)), `${second}`.padStart(2, '0').repeat(20))
  const dir = join(serviceDir, 'releases', id)
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'package.json'), '{"name":"app","version":"1.0.0","main":"server.js"}')
  await writeFile(join(dir, 'server.js'), '')
  await writeFile(join(dir, 'package-lock.json'), lock)
  if (good) {
    await recordRelease(paths.releaseRecords, { id, commit: 'a'.repeat(40), branch: 'stage', createdAt: '2026-11-24T05:00:00Z', installKey: (await readInstallKey({ dir, owner: me.uid }, '.')) ?? '' })
    await markReleaseGood(paths.releaseRecords, id)
  }
  return { id, dir }
}

const context = async (t: Test, exec: Exec, pm2: Pm2, previousLock: string) => {
  const root = await mkdtemp(join(tmpdir(), 'phase-install-'))
  t.teardown(() => rm(root, { recursive: true, force: true }))
  const settings = resolveSettings({ flags: { root }, env: {}, agentEnv: {}, tags: { Service: 'app', Environment: 'stage', Repository: 'file:///r.git' }, mode: 'aws' })
  const paths = pathsFor(root, 'app')
  const prev = await release(paths, 1, previousLock, true)
  await mkdir(join(prev.dir, 'node_modules/dep'), { recursive: true })
  await writeFile(join(prev.dir, 'node_modules/dep/index.js'), 'module.exports = 1\n')
  const next = await release(paths, 2, LOCK, false)
  const seams: Seams = {
    exec, identity: { identify: unused('identity') }, git: unused('git'), secrets: unused('secrets'),
    pm2: () => pm2, hook: unused('hook'), reportSink: unused('reportSink'), cacheStore: async () => undefined, now: () => new Date('2026-11-24T05:00:02Z'),
  }
  const ctx: RunContext = {
    seams, log: pino({ level: 'silent' }), scrubber: createScrubber(), input: { flags: {}, env: {}, agentEnv: {}, mode: 'aws' },
    settings, paths, spec: await loadServiceSpec({ dir: next.dir, owner: me.uid }, settings.manifestFile, 'app'),
    user: { name: 'me', ...me, switchTo: undefined, created: false },
    release: { id: next.id, dir: next.dir, serviceDir: next.dir, commit: '02'.repeat(20), reused: false },
  }
  return { ctx, prev, next }
}

const pm2Fake = () => {
  const calls = { ensureDaemon: 0 }
  const pm2: Pm2 = {
    list: unused('list'), start: unused('start'), reload: unused('reload'), delete: unused('delete'), save: unused('save'), kill: unused('kill'), stop: unused('stop'),
    async ensureDaemon() {
      calls.ensureDaemon++
    },
  }
  return { pm2, calls }
}

/** Exec that answers `cp` and `npm` as told and records what ran. */
const fakeExec = (cp: (args: readonly string[]) => Promise<number>) => {
  const ran: { file: string; args: readonly string[]; opts: RunOptions; nodeModulesExisted?: boolean }[] = []
  const exec: Exec = {
    async run(file, args, opts) {
      const entry: (typeof ran)[number] = { file, args, opts }
      ran.push(entry)
      if (file === 'cp') return { exitCode: await cp(args), stdout: '', stderr: 'cp: cannot create hard link: Operation not permitted', timedOut: false }
      // rm as the service user (core/remove-tree.ts), done here for real
      if (file === 'rm') await rm(args[args.length - 1] ?? '', { recursive: true, force: true })
      if (file === 'npm') entry.nodeModulesExisted = await stat(join(opts.cwd ?? '', 'node_modules')).then(() => true, () => false)
      return { exitCode: 0, stdout: '', stderr: '', timedOut: false }
    },
  }
  return { exec, ran }
}

t.test('same lockfile and Node ABI: node_modules is a tree of hard links, no npm ci (runs cp)', async t => {
  const f = pm2Fake()
  const { ctx, prev, next } = await context(t, createExec(), f.pm2, LOCK)
  const r = await install.run(ctx)
  t.match(r, { status: 'skipped', detail: new RegExp(`node_modules reused from ${prev.id}`) })
  const a = await stat(join(prev.dir, 'node_modules/dep/index.js'))
  const b = await stat(join(next.dir, 'node_modules/dep/index.js'))
  t.equal(b.ino, a.ino, 'the same file, linked')
  t.equal(b.nlink, 2)
  t.ok((await stat(join(next.dir, 'node_modules'))).isDirectory(), 'a directory of its own, not a symlink to the other release')
  t.equal(f.calls.ensureDaemon, 0, 'nothing slow to overlap: PM2 is left to start')
})

t.test('linking refused: the partial tree goes, npm ci runs, PM2 is made ready meanwhile', async t => {
  const f = pm2Fake()
  let target = ''
  const { exec, ran } = fakeExec(async args => {
    target = args[args.length - 1] ?? ''
    await mkdir(join(target, 'half'), { recursive: true })
    return 1
  })
  const { ctx } = await context(t, exec, f.pm2, LOCK)
  t.same(await install.run(ctx), { detail: 'npm ci' })
  t.same(ran.map(x => x.file), ['cp', 'rm', 'npm'])
  t.same(ran[0]?.args.slice(0, 1), ['-al'])
  t.same(ran[1]?.args, ['-rf', '--one-file-system', '--', join(ctx.release?.serviceDir ?? '', 'node_modules')], 'the partial tree removed by rm as the service user')
  t.equal(ran[2]?.nodeModulesExisted, false, 'npm ci starts from no node_modules')
  await ctx.pm2Ready
  t.equal(f.calls.ensureDaemon, 1, 'the daemon was made ready alongside npm ci')
})

t.test('another lockfile: npm ci, no reuse attempted', async t => {
  const f = pm2Fake()
  const { exec, ran } = fakeExec(async () => 0)
  const { ctx } = await context(t, exec, f.pm2, LOCK.replace('app', 'other'))
  t.same(await install.run(ctx), { detail: 'npm ci' })
  t.same(ran.map(x => x.file), ['npm'])
  t.equal(ctx.installKey, await readInstallKey({ dir: ctx.release?.dir ?? '', owner: me.uid }, '.'), 'the key read before npm ci, for build to record')
})

t.test('a warm-pool run installs but does not start PM2', async t => {
  const f = pm2Fake()
  const { exec } = fakeExec(async () => 0)
  const { ctx } = await context(t, exec, f.pm2, LOCK.replace('app', 'other'))
  ctx.warmPool = 'Warmed:Stopped'
  t.same(await install.run(ctx), { detail: 'npm ci' })
  t.equal(ctx.pm2Ready, undefined)
  t.equal(f.calls.ensureDaemon, 0)
})
