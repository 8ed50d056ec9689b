/**
 * The first boot of an instance under the v1/v2 hybrid cgroup layout (systemd-nspawn's default on
 * a hybrid host; older distributions): the same checks as the first boot of the whole life in
 * instance-life.ts, which runs under pure cgroup v2. See test/helpers/booted-instance.ts.
 */
import t from 'tap'
import { bootInstance, checkFirstBoot } from '../helpers/booted-instance.js'

t.setTimeout(900_000)
const b = await bootInstance(t, { name: 'hybrid', layout: 'hybrid' })

t.test('first boot, hybrid cgroup layout: user-data, the units, the service, one CONTINUE', async t => {
  const timings = await b.firstBoot()
  t.comment(`hybrid: container start -> user-data done ${(timings.userDataMs / 1000).toFixed(1)} s -> CONTINUE ${(timings.continueMs / 1000).toFixed(1)} s`)
  await checkFirstBoot(t, b, 'hybrid')
})

t.test('no secret value on the halted instance: disk, journal, console, command lines', async t => {
  await b.container.stop()
  t.same(await b.leaks(), [])
})
