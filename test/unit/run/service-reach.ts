/**
 * The reach check: the pure decision from mode bits (table-driven, no fakes), and the walk over
 * a real temp tree, with our Exec seam answering `getent` for the owner names.
 */
import t from 'tap'
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Exec, RunOptions, RunResult } from '../../../agent/src/core/exec.js'
import { pathsFor } from '../../../agent/src/core/paths.js'
import { allows, checkServiceReach, firstRefusal, reachTargets, refusalError, whoIs, type Entry, type Target, type Who } from '../../../agent/src/run/service-reach.js'

const user: Who = { name: 'app', uid: 1001, gids: [1001, 50] }
const fresh: Who = { name: 'app', uid: undefined, gids: [] }
const e = (mode: number, uid = 0, gid = 0, path = '/x'): Entry => ({ path, mode: 0o40000 | mode, uid, gid })

t.test('allows: owner, group (any of the user\'s groups), other, as the kernel decides', async t => {
  const cases: [string, Entry, Who, Parameters<typeof allows>[2], boolean][] = [
    ['root 0700, other user', e(0o700), user, 'enter', false],
    ['root 0711, other user', e(0o711), user, 'enter', true],
    ['root 0755, read', e(0o755), user, 'read', true],
    ['root 0751, list needs r too', e(0o751), user, 'list', false],
    ['owned 0700', e(0o700, 1001, 0), user, 'enter', true],
    ['owned 0070: owner bits apply, not group', e(0o070, 1001, 1001), user, 'enter', false],
    ['supplementary group 0750', e(0o750, 0, 50), user, 'list', true],
    ['group 0705: group bits apply, not other', e(0o705, 0, 50), user, 'enter', false],
    ['not created yet: only other', e(0o750, 0, 0), fresh, 'enter', false],
    ['not created yet, 0755', e(0o755), fresh, 'list', true],
    ['run needs x', e(0o644), user, 'run', false],
  ]
  for (const [name, entry, who, need, want] of cases) t.equal(allows(entry, who, need), want, name)
})

t.test('firstRefusal: the top-most closed directory; the target itself needs its own access', async t => {
  const target: Target = { path: '/a/b/repo', need: 'list', why: 'w', elsewhere: 'e' }
  const chain = [e(0o755, 0, 0, '/'), e(0o700, 0, 0, '/a'), e(0o700, 0, 0, '/a/b'), e(0o711, 0, 0, '/a/b/repo')]
  t.equal(firstRefusal(chain, user, target, true)?.entry.path, '/a', 'the first one down from /')
  const open = [e(0o755, 0, 0, '/'), e(0o711, 0, 0, '/a'), e(0o711, 0, 0, '/a/b'), e(0o711, 0, 0, '/a/b/repo')]
  t.same(firstRefusal(open, user, target, true)?.need, 'list', 'entering is not enough for a repository: it must be listable')
  t.equal(firstRefusal(open, user, target, false), undefined, 'a target that does not exist yet: only its existing ancestors must be enterable')
})

t.test('refusalError: exit 2, names the directory, its mode and owner, and the remedies', async t => {
  const target: Target = { path: '/root/co/.demo/root/srv', need: 'enter', why: 'the releases below it', elsewhere: 'use a --root the service user can reach' }
  const err = refusalError({ entry: e(0o700, 0, 0, '/root'), need: 'enter', target }, user, { user: 'root', group: 'root' })
  t.equal(err.exitCode, 2)
  t.equal(err.code, 'SERVICE_USER_CANNOT_REACH')
  t.equal(err.message, 'the service user "app" (uid 1001) cannot enter /root, above /root/co/.demo/root/srv (mode 0700, owner root:root); it needs the releases below it: as root, repo code runs as that user')
  t.equal(err.remedy, 'use a --root the service user can reach, make it traversable (chmod o+x /root), or run the agent as a non-root user (then everything runs as you)')
  const file = refusalError({ entry: e(0o600, 0, 0, '/opt/a/preload.js'), need: 'read', target: { ...target, path: '/opt/a/preload.js', need: 'read' } }, fresh, { user: 'root', group: 'root' })
  t.match(file.message, 'the service user "app" (not created yet) cannot read /opt/a/preload.js (mode 0600')
  t.match(file.remedy, 'chmod o+r /opt/a/preload.js')
})

t.test('reachTargets: the parents of what the agent creates, its own files, node, and a file:// repository', async t => {
  const p = pathsFor('/sandbox/root', 'app')
  const paths = reachTargets(p, 'file:///srv/git/app.git').map(x => `${x.need} ${x.path}`)
  t.ok(paths.includes('enter /sandbox/root/srv'))
  t.ok(paths.includes('enter /sandbox/root/var/lib'))
  t.ok(paths.includes('enter /sandbox/root/etc'))
  t.ok(paths.includes(`run ${process.execPath}`))
  t.ok(paths.includes('list /srv/git/app.git'))
  t.ok(paths.some(x => /^read .*env-preload\.js$/.test(x)))
  t.notOk(reachTargets(p, 'https://example.com/a.git').some(x => x.need === 'list'), 'no local path for a remote repository')
})

/** Our Exec seam: getent and id answered from a table, as the account databases would. */
const fakeExec = (answers: Record<string, string>): Exec => ({
  run: async (file: string, args: readonly string[], _opts: RunOptions): Promise<RunResult> => {
    const out = answers[[file, ...args].join(' ')]
    return { exitCode: out === undefined ? 2 : 0, stdout: out ?? '', stderr: '', timedOut: false }
  },
})

t.test('checkServiceReach walks a real tree, through symlinks to where they point', async t => {
  const top = mkdtempSync(join(tmpdir(), 'reach-'))
  t.teardown(() => rmSync(top, { recursive: true, force: true }))
  chmodSync(top, 0o755)
  const closed = join(top, 'closed')
  mkdirSync(join(closed, 'inner'), { recursive: true })
  chmodSync(closed, 0o700)
  symlinkSync(join(closed, 'inner'), join(top, 'link'))
  const owner = statSync(closed)
  const exec = fakeExec({ [`getent passwd ${owner.uid}`]: 'owner:x:0:0::/:/bin/sh\n', [`getent group ${owner.gid}`]: 'ownergrp:x:0:\n' })
  const other: Who = { name: 'app', uid: owner.uid + 4242, gids: [owner.gid + 4242] }

  const viaLink = await checkServiceReach(exec, other, [{ path: join(top, 'link/not-yet/srv'), need: 'enter', why: 'w', elsewhere: 'e' }])
  t.match(viaLink?.message, `cannot enter ${closed}, above ${join(top, 'link/not-yet/srv')} (mode 0700, owner owner:ownergrp)`, 'the link is followed to the closed directory')

  chmodSync(closed, 0o711)
  t.equal(await checkServiceReach(exec, other, [{ path: join(top, 'link/not-yet/srv'), need: 'enter', why: 'w', elsewhere: 'e' }]), undefined, 'traversable: no problem')

  const file = join(top, 'preload.js')
  writeFileSync(file, '', { mode: 0o600 })
  const unreadable = await checkServiceReach(exec, other, [{ path: file, need: 'read', why: 'w', elsewhere: 'e' }])
  t.match(unreadable?.message, `cannot read ${file} (mode 0600, owner owner:ownergrp)`)
  t.match(unreadable?.remedy, `chmod o+r ${file}`)
})

t.test('whoIs: uid and every group from id; a missing user has none', async t => {
  const exec = fakeExec({ 'id -u app': '1001\n', 'id -G app': '1001 50\n' })
  t.same(await whoIs(exec, 'app'), { name: 'app', uid: 1001, gids: [1001, 50] })
  t.same(await whoIs(exec, 'ghost'), { name: 'ghost', uid: undefined, gids: [] })
})
