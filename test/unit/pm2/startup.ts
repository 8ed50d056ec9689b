/**
 * ensurePm2Startup against a fake Exec seam (systemctl) and a real temp directory standing in for
 * /etc/systemd/system and /run/systemd/system: when it applies, what it writes, which systemctl
 * calls it makes on a first and on a converged run, a stray daemon, and failures.
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { isAgentError } from '../../../agent/src/core/errors.js'
import type { Exec, RunResult } from '../../../agent/src/core/exec.js'
import { ensurePm2Startup, PM2_UNIT, renderPm2Unit, type Pm2StartupOptions } from '../../../agent/src/pm2/startup.js'
import type { ServiceUser } from '../../../agent/src/core/service-user.js'
import { rejected, thrown } from '../../helpers/thrown.js'

const dir = mkdtempSync(join(tmpdir(), 'pm2-startup-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

const user: ServiceUser = { name: 'bootstrap-app', uid: 990, gid: 990, switchTo: { uid: 990, gid: 990 }, created: false }
const spec = { node: '/usr/bin/node', pm2Bin: '/opt/bootstrap-agent/0.1.0/node_modules/pm2/bin/pm2', home: '/var/lib/bootstrap-agent/home', pm2Home: '' }

/** systemctl as a state machine: enabled/active flags, and subcommands made to fail */
const fakeSystemctl = (state: { enabled: boolean; active: boolean; fail?: string }) => {
  const calls: string[] = []
  const exec: Exec = {
    async run(file, args): Promise<RunResult> {
      calls.push(`${file} ${args.join(' ')}`)
      const ok = (yes: boolean): RunResult => ({ exitCode: yes ? 0 : 1, stdout: '', stderr: yes ? '' : 'Job for bootstrap-pm2.service failed.\nSee "journalctl -xeu bootstrap-pm2.service".', timedOut: false })
      const [verb] = args
      if (verb === state.fail) return ok(false)
      if (verb === 'is-enabled') return ok(state.enabled)
      if (verb === 'is-active') return ok(state.active)
      if (verb === 'enable') state.enabled = true
      if (verb === 'start') state.active = true
      return ok(true)
    },
  }
  return { exec, calls }
}

const setup = (name: string) => {
  const base = join(dir, name)
  const unitDir = join(base, 'etc/systemd/system')
  const bootedDir = join(base, 'run/systemd/system')
  const pm2Home = join(base, 'home/.pm2')
  for (const d of [unitDir, bootedDir, pm2Home]) mkdirSync(d, { recursive: true })
  let kills = 0
  const opts = (exec: Exec, over: Partial<Pm2StartupOptions> = {}): Pm2StartupOptions => ({
    exec, root: '/', user, uid: 0, unitDir, bootedDir,
    spec: { ...spec, home: join(base, 'home'), pm2Home },
    killStrayDaemon: async () => void kills++,
    ...over,
  })
  return { unitDir, bootedDir, pm2Home, opts, kills: () => kills, unitFile: join(unitDir, PM2_UNIT) }
}

t.test('applies only on an instance: root /, the agent is root, systemd is PID 1', async t => {
  const s = setup('not-applicable')
  const { exec, calls } = fakeSystemctl({ enabled: false, active: false })
  t.equal(await ensurePm2Startup(s.opts(exec, { root: '/tmp/sandbox' })), undefined, 'a sandbox: nothing to say')
  t.match(await ensurePm2Startup(s.opts(exec, { uid: 1000 })), /not installed: the agent is not root/)
  t.match(await ensurePm2Startup(s.opts(exec, { user: { ...user, switchTo: undefined } })), /not installed: the agent is not root/)
  t.match(await ensurePm2Startup(s.opts(exec, { bootedDir: join(dir, 'no-such-dir') })), /not installed: systemd is not running/)
  t.same(calls, [], 'no systemctl call')
  t.throws(() => statSync(s.unitFile), 'no unit written')
})

t.test('first run: writes the unit 0644, reloads, enables and starts it; the next run only checks', async t => {
  const s = setup('first')
  const state = { enabled: false, active: false }
  const first = fakeSystemctl(state)
  t.equal(await ensurePm2Startup(s.opts(first.exec)), `${PM2_UNIT}: installed, enabled, started`)
  t.same(first.calls, [
    'systemctl daemon-reload',
    `systemctl is-enabled --quiet ${PM2_UNIT}`,
    `systemctl enable --quiet ${PM2_UNIT}`,
    `systemctl is-active --quiet ${PM2_UNIT}`,
    `systemctl start ${PM2_UNIT}`,
  ])
  t.equal(statSync(s.unitFile).mode & 0o777, 0o644)
  t.equal(readFileSync(s.unitFile, 'utf8'), renderPm2Unit({ ...spec, home: dirname(s.pm2Home), pm2Home: s.pm2Home, user: 'bootstrap-app' }))

  const again = fakeSystemctl(state)
  t.equal(await ensurePm2Startup(s.opts(again.exec)), `${PM2_UNIT}: enabled and active`)
  t.same(again.calls, [`systemctl is-enabled --quiet ${PM2_UNIT}`, `systemctl is-active --quiet ${PM2_UNIT}`], 'converged: no write, no reload, no restart')
  t.equal(s.kills(), 0)
})

t.test('a changed unit on an active daemon is rewritten, not restarted (that would stop the services)', async t => {
  const s = setup('changed')
  writeFileSync(s.unitFile, '# an older agent wrote this\n')
  const { exec, calls } = fakeSystemctl({ enabled: true, active: true })
  t.equal(await ensurePm2Startup(s.opts(exec)), `${PM2_UNIT}: updated, the change applies at its next start`)
  t.notOk(calls.some(c => /restart|start bootstrap/.test(c)), calls.join('; '))
  t.match(readFileSync(s.unitFile, 'utf8'), /^ExecStart=\/usr\/bin\/node \/opt\/bootstrap-agent\/0\.1\.0\/node_modules\/pm2\/bin\/pm2 resurrect$/m)
})

t.test('a live PM2 daemon outside the unit is stopped before the unit starts; a dead pid file is ignored', async t => {
  const s = setup('stray')
  // PM2_HOME is the service user's: the pid file is read as that user's file (pm2/home.ts)
  const pidFile = (pid: number) => {
    writeFileSync(join(s.pm2Home, 'pm2.pid'), `${pid}\n`)
    if (process.getuid?.() === 0) chownSync(join(s.pm2Home, 'pm2.pid'), user.uid, user.gid)
  }
  pidFile(process.pid)
  const live = fakeSystemctl({ enabled: true, active: false })
  t.match(await ensurePm2Startup(s.opts(live.exec)), new RegExp(`stopped a PM2 daemon outside the unit \\(pid ${process.pid}\\), started`))
  t.equal(s.kills(), 1)

  pidFile(2 ** 22 - 7)
  const dead = fakeSystemctl({ enabled: true, active: false })
  t.equal(await ensurePm2Startup(s.opts(dead.exec)), `${PM2_UNIT}: started`)
  t.equal(s.kills(), 1, 'no kill for a dead pid')

  // a pid file that is a link (to a file of root's naming a live pid) names no daemon
  rmSync(join(s.pm2Home, 'pm2.pid'))
  writeFileSync(join(s.pm2Home, 'elsewhere'), `${process.pid}\n`)
  symlinkSync(join(s.pm2Home, 'elsewhere'), join(s.pm2Home, 'pm2.pid'))
  const linked = fakeSystemctl({ enabled: true, active: false })
  t.equal(await ensurePm2Startup(s.opts(linked.exec)), `${PM2_UNIT}: started`)
  t.equal(s.kills(), 1, 'nothing read through the link')
})

t.test('a failed systemctl call is an error that says where to look', async t => {
  const s = setup('fails')
  const { exec } = fakeSystemctl({ enabled: true, active: false, fail: 'start' })
  const e = await rejected(() => ensurePm2Startup(s.opts(exec)))
  t.ok(isAgentError(e))
  if (!isAgentError(e)) return
  t.equal(e.code, 'PM2_UNIT_FAILED')
  t.match(e.message, /systemctl start bootstrap-pm2\.service failed \(exit 1\): Job for bootstrap-pm2\.service failed\. \| See/)
  t.match(e.remedy, /journalctl -u bootstrap-pm2\.service/)
})

t.test('the unit refuses what it cannot carry unquoted', async t => {
  for (const [what, over] of [
    ['node', { node: '/opt/my node/bin/node' }],
    ['PM2', { pm2Bin: '/opt/100%/pm2' }],
    ['home', { home: 'relative/home' }],
    ['user', { user: 'Bad User' }],
  ] as const) {
    const e = thrown(() => renderPm2Unit({ ...spec, pm2Home: '/var/lib/bootstrap-agent/home/.pm2', user: 'bootstrap-app', ...over }))
    t.ok(isAgentError(e) && e.code === 'PM2_UNIT_PATH', what)
  }
})

// This test runs /bin/sh on purpose: the unit's ExecStartPre line, as systemd would run it.
t.test('the first start finds an empty list instead of no dump; a saved dump (or its backup) is left alone', async t => {
  const s = setup('dump')
  const line = renderPm2Unit({ ...spec, pm2Home: s.pm2Home, user: 'bootstrap-app' }).split('\n').find(l => l.startsWith('ExecStartPre='))
  const script = /^ExecStartPre=-\/bin\/sh -c '(.*)'$/.exec(line ?? '')?.[1]
  t.ok(script, `an ExecStartPre that may fail without failing the start: ${line}`)
  const run = () => execFileSync('/bin/sh', ['-c', script ?? 'false'])
  const dump = join(s.pm2Home, 'dump.pm2')
  rmSync(s.pm2Home, { recursive: true })
  run()
  t.same(JSON.parse(readFileSync(dump, 'utf8')), [], 'nothing saved yet, no PM2_HOME yet: an empty list, which `pm2 resurrect` restores without an error')
  writeFileSync(dump, '[{"name":"app"}]')
  run()
  t.equal(readFileSync(dump, 'utf8'), '[{"name":"app"}]', 'a saved dump is kept')
  rmSync(dump)
  writeFileSync(`${dump}.bak`, '[{"name":"app"}]')
  run()
  t.throws(() => statSync(dump), "PM2's backup alone: PM2 falls back to it, so nothing is written")
})
