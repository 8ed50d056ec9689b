/**
 * One instance's whole life, booted for real: systemd as PID 1 (pure cgroup v2, as Amazon Linux
 * 2023 and Ubuntu 22.04+), cloud-init running the rendered user-data from a NoCloud seed, the
 * agent's units, bootstrap-pm2.service and the watch under a real systemd; AWS, IMDS, git and the
 * downloads from test servers on 127.0.0.1 (test/helpers/booted-instance.ts). In order:
 * first boot, reboot, `systemctl restart bootstrap-agent`, the kill switch (set, then removed),
 * a failed boot, termination; then a leak scan of the halted instance's whole disk. Every step
 * builds on the state the previous one left, as on a real instance.
 */
import t from 'tap'
import { bootInstance, checkFirstBoot, LAUNCH_HOOK, ON_INSTANCE, TERM_HOOK, waitFor, type BootedInstance } from '../helpers/booted-instance.js'

t.setTimeout(1_200_000)
const b: BootedInstance = await bootInstance(t, { name: 'life', layout: 'unified' })
const { container, world, group } = b
const sh = (script: string) => container.exec(['sh', '-c', script])
const completionCalls = () => world.proxy.calls.filter(c => c.action === 'CompleteLifecycleAction' && c.instanceId === group.instanceId)
interface StateJson { outcome: string; commit?: string; phases: { name: string; status: string; detail?: string }[]; error?: { code: string; message: string } }
const state = () => JSON.parse(b.read(ON_INSTANCE.stateFile) || '{}') as StateJson
const phase = (name: string) => state().phases?.find(p => p.name === name)
const releases = async () => (await sh(`ls /srv/app/releases`)).stdout.trim().split('\n')
const current = async () => (await container.exec(['readlink', ON_INSTANCE.current])).stdout.trim()
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`

t.test('first boot: user-data, the units, the service, one CONTINUE', async t => {
  const timings = await b.firstBoot()
  t.comment(`unified: container start -> user-data done ${secs(timings.userDataMs)} -> CONTINUE ${secs(timings.continueMs)}`)
  await checkFirstBoot(t, b, 'unified')
})

t.test('reboot: PM2 brings the service back before the agent runs; the run converges', async t => {
  const before = { current: await current(), releases: await releases(), completions: completionCalls().length, commit: state().commit }
  await container.reboot()
  const agent = await b.unitSettled('bootstrap-agent.service')
  t.comment(`reboot: container start -> boot run done ${secs(Date.now() - container.startedAt)}`)
  t.match(agent, { ActiveState: 'active', Result: 'success' }, 'the boot-time run succeeded')
  const pm2 = await b.unit('bootstrap-pm2.service', ['ActiveState', 'ActiveEnterTimestampMonotonic'])
  const run = await b.unit('bootstrap-agent.service', ['ExecMainStartTimestampMonotonic'])
  t.equal(pm2['ActiveState'], 'active')
  t.ok(Number(pm2['ActiveEnterTimestampMonotonic']) > 0 && Number(pm2['ActiveEnterTimestampMonotonic']) < Number(run['ExecMainStartTimestampMonotonic']),
    `bootstrap-pm2.service was up (${pm2['ActiveEnterTimestampMonotonic']} us) before the agent started (${run['ExecMainStartTimestampMonotonic']} us)`)
  t.match(phase('start'), { status: 'skipped', detail: /already online, nothing changed/ }, 'the agent found the service online and left it alone')
  t.equal(state().commit, before.commit)
  t.equal(await current(), before.current, 'the same release is live')
  t.same(await releases(), before.releases, 'no new release was deployed')
  t.equal(completionCalls().length, before.completions, 'no lifecycle action was completed (the instance is InService)')
  const h = await b.health()
  t.equal(h?.apiKey, b.fp(b.secrets.apiKey), 'the service answers with its secrets')
})

t.test('systemctl restart bootstrap-agent leaves the service alone', async t => {
  const before = await b.health()
  const pm2Before = await b.unit('bootstrap-pm2.service', ['MainPID'])
  const r = await container.exec(['systemctl', 'restart', 'bootstrap-agent.service'])
  t.equal(r.code, 0, r.stderr)
  t.match(await b.unitSettled('bootstrap-agent.service'), { ActiveState: 'active', Result: 'success' }, 'the run again succeeded')
  const after = await b.health()
  t.ok(before?.pid, 'the service answered before')
  t.equal(after?.pid, before?.pid, "the service's pid is the same")
  t.same(await b.unit('bootstrap-pm2.service', ['MainPID']), pm2Before, "so is PM2's")
})

t.test('kill switch: both agent units are skipped at boot, the service still serves; removed, the next boot runs', async t => {
  await container.exec(['touch', ON_INSTANCE.killSwitch])
  await container.reboot()
  await b.bootSettled()
  for (const unit of ['bootstrap-agent.service', 'bootstrap-agent-watch.service']) {
    t.match(await b.unit(unit), { ActiveState: 'inactive', ConditionResult: 'no' }, `${unit}: condition failed, not run`)
  }
  const h = await b.health()
  t.equal(h?.apiKey, b.fp(b.secrets.apiKey), 'the service still serves (bootstrap-pm2.service)')
  t.match((await container.exec(['cat', `/proc/${h?.pid ?? 0}/cgroup`])).stdout, /\/system\.slice\/bootstrap-pm2\.service$/m)

  await container.exec(['rm', ON_INSTANCE.killSwitch])
  await container.reboot()
  t.match(await b.unitSettled('bootstrap-agent.service'), { ActiveState: 'active', Result: 'success', ConditionResult: 'yes' }, 'the next boot ran the agent, successfully')
  t.match(await b.unit('bootstrap-agent-watch.service'), { ActiveState: 'active', ConditionResult: 'yes' }, 'and the watch')
})

t.test('a failed boot: a commit whose health check fails; ABANDON once, the unit failed with the message', async t => {
  const serving = await b.health()
  const commit = await b.commitBroken()
  const before = completionCalls().length
  world.proxy.setActive([{ instanceId: group.instanceId, hookName: LAUNCH_HOOK }])
  await container.reboot()
  const agent = await b.unitSettled('bootstrap-agent.service')
  t.match(agent, { ActiveState: 'failed', Result: 'exit-code', ExecMainStatus: '1' }, 'bootstrap-agent.service failed (exit 1)')
  t.match(completionCalls().slice(before), [{ hookName: LAUNCH_HOOK, result: 'ABANDON', status: 200 }], 'exactly one completion: ABANDON')
  t.equal(completionCalls().length, before + 1)
  t.match(state(), { outcome: 'rolled-back', commit, error: { code: 'HEALTH_FAILED' } })
  // as an operator types it: the journal's last 10 lines
  const status = await container.exec(['systemctl', 'status', '--no-pager', 'bootstrap-agent.service'])
  t.match(status.stdout, /Active: failed \(Result: exit-code\)/, 'systemctl status: failed')
  t.match(status.stdout, /bootstrap-agent: rolled-back \[HEALTH_FAILED\]: health check of "app" failed/, "systemctl status shows the agent's message")
  const h = await b.health()
  t.equal(h?.release, serving?.release, 'the previous release serves again')
})

t.test('termination: the watch runs preStop, stops the service gracefully, one CONTINUE on the terminating hook', async t => {
  const serving = await b.health()
  const before = completionCalls().length
  b.imds.set({ lifecycleState: 'Terminated' })
  world.proxy.setActive([{ instanceId: group.instanceId, hookName: TERM_HOOK, state: 'Terminating:Wait' }])
  await waitFor('the terminating hook to be completed', () => (completionCalls().length > before ? true : undefined),
    async () => `${b.read(ON_INSTANCE.watchFile)}\n${(await container.exec(['journalctl', '--no-pager', '-o', 'cat', '-u', 'bootstrap-agent-watch.service'])).stdout.slice(-4000)}`)
  t.match(completionCalls().slice(before), [{ hookName: TERM_HOOK, result: 'CONTINUE', status: 200 }], 'exactly one completion: CONTINUE on the terminating hook')
  interface WatchJson { drain?: { outcome: string; steps: { name: string; status: string }[] }; hook?: { outcome: string; answered: boolean } }
  const watch = await waitFor('watch.json to record the hook', () => {
    const w = JSON.parse(b.read(ON_INSTANCE.watchFile) || '{}') as WatchJson
    return w.hook?.answered ? w : undefined
  })
  t.match(watch.drain, { outcome: 'ok' }, 'the drain succeeded')
  t.match(watch.drain?.steps.map(s => `${s.name}:${s.status}`), ['stop-run:skipped', 'pre-stop:ok', 'stop:ok', 'flush-logs:ok'])
  const marker = JSON.parse(b.read(ON_INSTANCE.preStopMarker) || '{}') as { uid?: number; apiKey?: string }
  t.equal(marker.uid, serving?.uid, 'preStop ran as the service user')
  t.equal(marker.apiKey, b.fp(b.secrets.apiKey), "with the service's secrets")
  const logs = (await container.exec(['sh', '-c', `cat ${ON_INSTANCE.appLogs}/*`])).stdout
  t.match(logs, /SIGINT: closing the server\n[^]*server closed: exiting 0/, 'the service stopped gracefully on SIGINT')
  t.equal(await b.health(), undefined, 'the service no longer answers')
  t.equal(b.imds.tokenlessRequests, 0, 'no IMDSv1 request in the whole life')
})

t.test('no secret value on the halted instance: its whole disk, journal files included, the console, command lines', async t => {
  await container.stop()
  t.same(await b.leaks(), [])
})
