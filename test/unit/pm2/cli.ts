import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { createServer, type Socket } from 'node:net'
import type { Exec } from '../../../agent/src/core/exec.js'
import { createPm2, dumpHolds } from '../../../agent/src/pm2/cli.js'

/** PM2_HOME = home, both this test user's */
const H = (dir: string) => ({ home: dir, pm2Home: dir, owner: process.getuid?.() ?? 0 })

const setup = (t: { teardown(fn: () => void): void }) => {
  const dir = mkdtempSync(join(tmpdir(), 'pm2-dump-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const eco = join(dir, 'ecosystem.json')
  const dump = join(dir, 'dump.pm2')
  const at = (file: string, seconds: number) => utimesSync(file, seconds, seconds)
  return { dir, eco, dump, at }
}

t.test('a dump written after the ecosystem file and listing the app holds it', async t => {
  const { dir, eco, dump, at } = setup(t)
  writeFileSync(eco, '{"apps":[]}')
  writeFileSync(dump, JSON.stringify([{ name: 'other' }, { name: 'app', pm_id: 0 }]))
  at(eco, 1_000)
  at(dump, 2_000)
  t.equal(await dumpHolds(H(dir), eco, 'app'), true)
  t.equal(await dumpHolds(H(dir), eco, 'missing'), false, 'an app the dump does not list')
})

t.test('an ecosystem file newer than the dump (a run killed between pm2 start and pm2 save): save', async t => {
  const { dir, eco, dump, at } = setup(t)
  writeFileSync(eco, '{"apps":[]}')
  writeFileSync(dump, JSON.stringify([{ name: 'app' }]))
  at(dump, 1_000)
  at(eco, 2_000)
  t.equal(await dumpHolds(H(dir), eco, 'app'), false)
})

t.test('no dump, or a dump that is not JSON: save', async t => {
  const { dir, eco, dump, at } = setup(t)
  writeFileSync(eco, '{"apps":[]}')
  at(eco, 1_000)
  t.equal(await dumpHolds(H(dir), eco, 'app'), false, 'no dump')
  writeFileSync(dump, '[{"name":"app"')
  at(dump, 2_000)
  t.equal(await dumpHolds(H(dir), eco, 'app'), false, 'half-written dump')
})

t.test('a dump that is a link or a FIFO (PM2_HOME is the service user\'s) is no dump: save, at once', async t => {
  const { dir, eco, dump, at } = setup(t)
  writeFileSync(eco, '{"apps":[]}')
  at(eco, 1_000)
  const elsewhere = join(dir, 'elsewhere.json')
  writeFileSync(elsewhere, JSON.stringify([{ name: 'app' }]))
  at(elsewhere, 2_000)
  symlinkSync(elsewhere, dump)
  t.equal(await dumpHolds(H(dir), eco, 'app'), false, 'a link')
  rmSync(dump)
  // opts in to one child process: Node has no mkfifo
  execFileSync('mkfifo', [dump])
  t.equal(await dumpHolds(H(dir), eco, 'app'), false, 'a FIFO: never opened for a read that would wait')
  t.equal(await dumpHolds({ ...H(dir), pm2Home: join(dir, 'none') }, eco, 'app'), false, 'no PM2_HOME')
})

t.test('a daemon that accepts and never answers is hung: ensureDaemon fails at once, without a `pm2 ping` waiting on it again', async t => {
  const { dir } = setup(t)
  const sockets: Socket[] = []
  const server = createServer(s => void sockets.push(s)) // accepts, never answers
  await new Promise<void>(resolve => server.listen(join(dir, 'rpc.sock'), resolve))
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    server.close()
  })
  const ran: string[][] = []
  const exec: Exec = {
    async run(_file, args) {
      ran.push([...args])
      return { exitCode: 0, stdout: '', stderr: '', timedOut: false }
    },
  }
  const pm2 = createPm2({ exec, pm2Home: dir, home: dir, user: undefined, timeoutMs: 300 })
  await t.rejects(pm2.ensureDaemon(), { code: 'PM2_FAILED', message: /pm2 ping gave no answer within 0 s \(is the PM2 daemon hung\?\)/ })
  t.same(ran, [], 'no CLI call')
})
