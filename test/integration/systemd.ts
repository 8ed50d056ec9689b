/**
 * The units the project ships, checked by systemd itself: `systemd-analyze verify` (Debian's
 * systemd, installed by scripts/test-setup.mjs) on every unit under systemd/ and on the
 * bootstrap-pm2.service the agent writes on an instance (rendered here with this machine's node
 * and PM2). verify exits 0 even when it ignores a misspelt key or a bad value, so any output at
 * all fails the test; a broken unit proves that the check sees such warnings.
 *
 * verify runs against a temporary root (--root): a copy of the distribution's units, our units in
 * its /etc/systemd/system, and a stub for every program an Exec*= line names (verify checks that
 * they exist and are executable). No systemd needs to run, and nothing outside the temp dir changes.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { pathsFor } from '../../agent/src/core/paths.js'
import { PM2_BIN } from '../../agent/src/pm2/cli.js'
import { PM2_UNIT, renderPm2Unit } from '../../agent/src/pm2/startup.js'
import { OPTIONS } from '../../agent/src/config/settings.js'
import { REPO } from '../helpers/sandbox.js'

const SYSTEMD_DIR = join(REPO, 'systemd')
const shipped = readdirSync(SYSTEMD_DIR).filter(f => /\.(service|timer|socket|path|target)$/.test(f)).sort()
const instance = pathsFor('/', 'x')
const pm2Unit = renderPm2Unit({ user: 'bootstrap-app', node: process.execPath, pm2Bin: PM2_BIN, home: instance.home, pm2Home: instance.pm2Home })
const units: Record<string, string> = {
  ...Object.fromEntries(shipped.map(f => [f, readFileSync(join(SYSTEMD_DIR, f), 'utf8')])),
  [PM2_UNIT]: pm2Unit,
}

/** key -> every value, from the non-comment lines of a unit (sections ignored: our keys are unique) */
const parseUnit = (text: string): Map<string, string[]> => {
  const keys = new Map<string, string[]>()
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (!line || line.startsWith('#') || line.startsWith('[')) continue
    const eq = line.indexOf('=')
    const k = line.slice(0, eq)
    keys.set(k, [...(keys.get(k) ?? []), line.slice(eq + 1)])
  }
  return keys
}
const one = (u: Map<string, string[]>, k: string) => u.get(k)?.join(' ')

const work = mkdtempSync(join(tmpdir(), 'systemd-verify-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))

/** A root with the distribution's units, these units, and a stub for every Exec*= program. */
const makeRoot = (name: string, files: Record<string, string>): string => {
  const root = join(work, name)
  for (const dir of ['/usr/lib/systemd/system', '/lib/systemd/system']) {
    const real = existsSync(dir) ? realpathSync(dir) : undefined
    if (real && !existsSync(join(root, real))) cpSync(real, join(root, real), { recursive: true, verbatimSymlinks: true })
  }
  mkdirSync(join(root, 'etc/systemd/system'), { recursive: true })
  for (const [file, text] of Object.entries(files)) {
    writeFileSync(join(root, 'etc/systemd/system', file), text)
    for (const values of [...parseUnit(text)].filter(([k]) => /^Exec[A-Za-z]+$/.test(k)).map(([, v]) => v)) {
      for (const v of values) {
        // the program is the first word, after systemd's prefixes (-, @, :, +, !)
        const program = v.replace(/^[-@:+!]+/, '').split(/\s+/)[0] ?? ''
        const stub = join(root, program)
        mkdirSync(dirname(stub), { recursive: true })
        writeFileSync(stub, '#!/bin/sh\n')
        chmodSync(stub, 0o755)
      }
    }
  }
  return root
}

const verify = (root: string, names: string[]) => {
  const r = spawnSync('systemd-analyze', ['verify', `--root=${root}`, ...names], { encoding: 'utf8' })
  return { code: r.status, output: `${r.stdout}${r.stderr}`.trim() }
}

t.test('systemd-analyze verify: every unit under systemd/ and the PM2 unit the agent writes', async t => {
  t.ok(shipped.includes('bootstrap-agent.service'), 'systemd/bootstrap-agent.service is shipped')
  const r = verify(makeRoot('good', units), Object.keys(units))
  t.equal(r.output, '', 'no warning and no error')
  t.equal(r.code, 0)
})

t.test('the check sees what verify only warns about', async t => {
  const broken = units['bootstrap-agent.service']?.replace('ProtectSystem=strict', 'ProtectSystem=strcit\nRemainAfterExitt=yes') ?? ''
  const r = verify(makeRoot('broken', { 'bootstrap-agent.service': broken }), ['bootstrap-agent.service'])
  t.match(r.output, /Failed to parse protect system value[^]*Unknown key 'RemainAfterExitt'/)
  t.equal(r.code, 0, 'systemd-analyze itself exits 0 here: hence the check on its output')
  const missing = units['bootstrap-agent.service']?.replace('ExecStart=/opt/bootstrap-agent', 'ExecStart=/nonexistent/bootstrap-agent') ?? ''
  const root = makeRoot('missing', {})
  writeFileSync(join(root, 'etc/systemd/system/bootstrap-agent.service'), missing)
  t.match(verify(root, ['bootstrap-agent.service']).output, /Command \/nonexistent\/bootstrap-agent\S* is not executable/)
})

t.test('bootstrap-agent.service: what the issue asks of it', async t => {
  const u = parseUnit(units['bootstrap-agent.service'] ?? '')
  t.equal(one(u, 'Type'), 'oneshot')
  t.equal(one(u, 'RemainAfterExit'), 'yes')
  t.equal(one(u, 'ExecStart'), '/opt/bootstrap-agent/current/bin/bootstrap-agent run --reason boot')
  t.equal(one(u, 'After'), 'network-online.target')
  t.equal(one(u, 'Wants'), 'network-online.target')
  t.equal(one(u, 'EnvironmentFile'), '-/etc/bootstrap-agent/agent.env')
  t.equal(one(u, 'StandardOutput'), 'journal')
  t.equal(one(u, 'WantedBy'), 'multi-user.target')
  t.notOk(u.has('User'), 'runs as root: it creates the service user')
  t.notOk(u.has('KillMode'), 'default control-group: PM2 lives in its own unit, nothing needs to escape this one')
  t.notOk(u.has('MemoryDenyWriteExecute'), "V8's JIT needs W+X memory")

  // the agent's own timeouts fire before systemd's (so it can roll back and complete the hook)
  const dflt = (name: string) => Number(OPTIONS.find(o => o.name === name)?.default)
  const agentWorstCaseSec = dflt('gitTimeoutMs') * dflt('gitAttempts') + dflt('installTimeoutMs') + dflt('buildTimeoutMs') + dflt('healthTimeoutMs')
  const m = /^(\d+)min$/.exec(one(u, 'TimeoutStartSec') ?? '')
  t.ok(m, 'TimeoutStartSec in minutes')
  t.ok(Number(m?.[1]) * 60 > agentWorstCaseSec + 300, `TimeoutStartSec ${one(u, 'TimeoutStartSec')} covers the agent's timeouts (${agentWorstCaseSec} s) with room for AWS calls`)

  // every directory the agent writes on an instance is writable under ProtectSystem=strict
  t.equal(one(u, 'ProtectSystem'), 'strict')
  const writable = [...(u.get('ReadWritePaths') ?? []).flatMap(v => v.split(/\s+/)), ...['StateDirectory', 'LogsDirectory'].flatMap(k => (u.get(k) ?? []).map(d => `/var/${k === 'StateDirectory' ? 'lib' : 'log'}/${d}`))]
  const p = pathsFor('/', 'auth-service')
  for (const dir of [p.etcDir, p.envDir, p.serviceDir, p.stateDir, p.home, p.pm2Home, p.logDir, '/etc/passwd', '/etc/systemd/system']) {
    t.ok(writable.some(w => dir === w || dir.startsWith(`${w}/`)), `${dir} is writable (${writable.join(' ')})`)
  }
})

t.test('the kill switch, evaluated by systemd', async t => {
  const u = parseUnit(units['bootstrap-agent.service'] ?? '')
  const condition = one(u, 'ConditionPathExists') ?? ''
  t.equal(condition, '!/etc/bootstrap-agent/disabled')
  // systemd-analyze condition does not honour --root: the same condition on a temp path
  const flag = join(work, 'kill-switch/etc/bootstrap-agent/disabled')
  const evaluate = () => spawnSync('systemd-analyze', ['condition', `ConditionPathExists=!${flag}`], { encoding: 'utf8' }).status
  t.equal(evaluate(), 0, 'no file: the agent runs')
  mkdirSync(dirname(flag), { recursive: true })
  writeFileSync(flag, '')
  t.not(evaluate(), 0, 'touch /etc/bootstrap-agent/disabled: the unit is skipped')
})

t.test('bootstrap-pm2.service: PM2 resurrects the saved apps as the service user', async t => {
  const u = parseUnit(pm2Unit)
  t.equal(one(u, 'Type'), 'forking')
  t.equal(one(u, 'User'), 'bootstrap-app')
  t.equal(one(u, 'PIDFile'), `${instance.pm2Home}/pm2.pid`)
  t.equal(one(u, 'ExecStart'), `${process.execPath} ${PM2_BIN} resurrect`)
  t.equal(one(u, 'ExecStop'), `${process.execPath} ${PM2_BIN} kill`)
  t.ok(u.get('Environment')?.includes(`PM2_HOME=${instance.pm2Home}`))
  t.equal(one(u, 'Before'), 'bootstrap-agent.service', 'ordered before the agent: its `systemctl start` of this unit cannot deadlock')
  t.equal(one(u, 'WantedBy'), 'multi-user.target')
})

t.test('bootstrap-agent-watch.service: long-running, restarted on failure, hardened like the agent', async t => {
  t.ok(shipped.includes('bootstrap-agent-watch.service'), 'systemd/bootstrap-agent-watch.service is shipped (and verified above)')
  const w = parseUnit(units['bootstrap-agent-watch.service'] ?? '')
  const a = parseUnit(units['bootstrap-agent.service'] ?? '')
  t.equal(one(w, 'Type'), 'simple')
  t.equal(one(w, 'Restart'), 'on-failure')
  t.equal(one(w, 'ExecStart'), '/opt/bootstrap-agent/current/bin/bootstrap-agent watch')
  t.equal(one(w, 'EnvironmentFile'), '-/etc/bootstrap-agent/agent.env')
  t.equal(one(w, 'WantedBy'), 'multi-user.target')
  t.equal(one(w, 'After'), 'network-online.target', 'not after bootstrap-agent.service: a termination during the boot run is watched too')
  t.notOk(w.has('RemainAfterExit'), 'a daemon, not a oneshot')
  const m = /^(\d+)min$/.exec(one(w, 'TimeoutStopSec') ?? '')
  t.ok(m && Number(m[1]) * 60 >= 120, `TimeoutStopSec ${one(w, 'TimeoutStopSec')} lets a drain in progress finish (the spot notice is 2 min)`)
  // the same sandbox as the agent's unit, key by key: the watch starts runs, PM2 and preStop
  const HARDENING = ['NoNewPrivileges', 'ProtectSystem', 'ReadWritePaths', 'StateDirectory', 'LogsDirectory', 'ExecStartPre', 'ProtectHome', 'PrivateTmp', 'PrivateDevices',
    'ProtectKernelTunables', 'ProtectKernelModules', 'ProtectKernelLogs', 'ProtectControlGroups', 'ProtectClock', 'ProtectHostname', 'RestrictNamespaces', 'RestrictRealtime',
    'RestrictSUIDSGID', 'LockPersonality', 'SystemCallArchitectures', 'RestrictAddressFamilies', 'CapabilityBoundingSet', 'ConditionPathExists']
  for (const k of HARDENING) t.equal(one(w, k), one(a, k), `${k} as in bootstrap-agent.service`)
})
