import t, { type Test } from 'tap'
import { execFileSync } from 'node:child_process'
import { linkSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { isRefused } from '../../../agent/src/core/beneath.js'
import { readUntrusted, syncUntrusted, tailUntrusted } from '../../../agent/src/core/untrusted-files.js'

const me = process.getuid?.() ?? 0
const CANARY = 'canary-root-only-0123456789'

/** a log directory holding, beside a real log, every kind of thing a hostile service could plant */
const logs = (t: Test) => {
  const dir = t.testdir({ outside: { 'canary.txt': CANARY }, logs: { 'app-out.log': 'one\n\ntwo\nthree\n' } })
  const d = join(dir, 'logs')
  symlinkSync(join(dir, 'outside/canary.txt'), join(d, 'link.log'))
  linkSync(join(dir, 'outside/canary.txt'), join(d, 'hard.log'))
  // this test opts in to one child process: Node has no mkfifo
  execFileSync('mkfifo', [join(d, 'fifo.log')])
  writeFileSync(join(d, 'big.log'), 'x'.repeat(100))
  return { dir, d }
}

t.test('readUntrusted reads a regular file of its owner, and undefined when missing', async t => {
  const { d } = logs(t)
  t.equal(await readUntrusted({ dir: d, rel: 'app-out.log', owner: me }, 1024), 'one\n\ntwo\nthree\n')
  t.equal(await readUntrusted({ dir: d, rel: 'none.log', owner: me }, 1024), undefined)
})

t.test('readUntrusted refuses links, hard links, FIFOs (without waiting), other owners and big files', async t => {
  const { d } = logs(t)
  const cases: [string, RegExp, number?][] = [
    ['link.log', /symbolic link/],
    ['hard.log', /2 hard links/],
    ['fifo.log', /a FIFO/],
    ['big.log', /100 bytes, more than the 10 expected/, 10],
    ['app-out.log', /belongs to uid \d+, not to the service user \(uid 4242\)/],
  ]
  for (const [rel, why, max] of cases) {
    const owner = rel === 'app-out.log' ? 4242 : me
    const e = await readUntrusted({ dir: d, rel, owner }, max ?? 1024).then(() => undefined, (x: unknown) => x)
    t.ok(isRefused(e), `${rel} refused`)
    if (isRefused(e)) {
      t.match(e.why, why, rel)
      t.notMatch(e.message, CANARY, 'the content is not in the error')
    }
  }
})

t.test('tailUntrusted: the last non-empty lines, or why the file was not read', async t => {
  const { d } = logs(t)
  t.same(await tailUntrusted({ dir: d, rel: 'app-out.log', owner: me }, 2), { kind: 'lines', lines: ['two', 'three'] })
  t.same(await tailUntrusted({ dir: d, rel: 'app-out.log', owner: me }, 9, 6), { kind: 'lines', lines: ['three'] }, 'only the last bytes')
  t.same(await tailUntrusted({ dir: d, rel: 'none.log', owner: me }, 2), { kind: 'missing' })
  t.same(await tailUntrusted({ dir: d, rel: 'link.log', owner: me }, 2), { kind: 'refused', why: 'it is a symbolic link' })
  t.same(await tailUntrusted({ dir: d, rel: 'fifo.log', owner: me }, 2), { kind: 'refused', why: 'it is a FIFO' })
  t.match(await tailUntrusted({ dir: d, rel: 'hard.log', owner: me }, 2), { kind: 'refused', why: /hard links/ })
  t.same(await tailUntrusted({ dir: d, rel: 'big.log', owner: me }, 2), { kind: 'lines', lines: ['x'.repeat(100)] }, 'a log may be any size')
})

t.test('syncUntrusted syncs regular files only, and never waits on a FIFO', async t => {
  const { d } = logs(t)
  t.equal(await syncUntrusted({ dir: d, rel: 'app-out.log' }), true)
  t.equal(await syncUntrusted({ dir: d, rel: 'fifo.log' }), false)
  t.equal(await syncUntrusted({ dir: d, rel: 'link.log' }), false)
  t.equal(await syncUntrusted({ dir: d, rel: 'none.log' }), false)
})
