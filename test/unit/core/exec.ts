/**
 * core/exec.ts's file descriptors for stdin and stdout (the release cache's archive worker takes
 * its archive that way). This unit test opts in to child processes (testing.md): `cat`.
 */
import t from 'tap'
import { lstatSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createExec } from '../../../agent/src/core/exec.js'
import { rejected } from '../../helpers/thrown.js'

const exec = createExec()
const env = { PATH: '/usr/bin:/bin' }

t.test('stdinFile: the child reads the file, opened by the agent', async t => {
  const dir = t.testdir({ 'in.txt': 'from the file\n' })
  const r = await exec.run('cat', [], { env, timeoutMs: 10_000, stdinFile: join(dir, 'in.txt') })
  t.same([r.exitCode, r.stdout], [0, 'from the file\n'])
})

t.test('stdoutFile: a new file of the agent (0600), written by the child; not buffered', async t => {
  const dir = t.testdir({ 'in.txt': 'x'.repeat(100_000) })
  const out = join(dir, 'out.bin')
  const r = await exec.run('cat', [], { env, timeoutMs: 10_000, stdinFile: join(dir, 'in.txt'), stdoutFile: out })
  t.equal(r.exitCode, 0)
  t.equal(r.stdout, '', 'nothing captured')
  t.equal(readFileSync(out, 'utf8'), 'x'.repeat(100_000))
  t.equal(lstatSync(out).mode & 0o777, 0o600)
})

t.test('refused: an existing stdoutFile, a symlink for either', async t => {
  const dir = t.testdir({ 'in.txt': 'x', 'taken.txt': 'keep me' })
  t.match(await rejected(() => exec.run('cat', [], { env, timeoutMs: 10_000, stdoutFile: join(dir, 'taken.txt') })), { code: 'EEXIST' })
  t.equal(readFileSync(join(dir, 'taken.txt'), 'utf8'), 'keep me')
  symlinkSync(join(dir, 'in.txt'), join(dir, 'link'))
  t.match(await rejected(() => exec.run('cat', [], { env, timeoutMs: 10_000, stdinFile: join(dir, 'link') })), { code: 'ELOOP' })
  writeFileSync(join(dir, 'target'), 'x')
  symlinkSync(join(dir, 'target'), join(dir, 'outlink'))
  t.match(await rejected(() => exec.run('cat', [], { env, timeoutMs: 10_000, stdinFile: join(dir, 'in.txt'), stdoutFile: join(dir, 'outlink') })), { code: 'EEXIST' })
})
