import { lstat, mkdir, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import t, { type Test } from 'tap'
import { readReleaseRecord, recordRelease } from '../../../agent/src/releases/records.js'
import {
  listReleases,
  parseReleaseId,
  pickReleasesToPrune,
  readCurrent,
  releaseId,
  newReleaseId,
  removeRelease,
  removeStaleTemps,
  switchCurrent,
} from '../../../agent/src/releases/releases.js'

const SHA = '0123456789abcdef0123456789abcdef01234567'
const meta = (id: string) => ({ id, commit: SHA, branch: 'main', createdAt: '2026-11-24T02:15:00Z' })
// r(n): the n-th release in time order, so tables read as numbers
const r = (n: number) => releaseId(new Date(Date.UTC(2026, 10, 24, 2, 15, n)), SHA)

t.test('releaseId is UTC, sortable and filesystem-safe; parseReleaseId inverts it', async (t) => {
  const id = releaseId(new Date('2026-11-24T02:15:00.123Z'), SHA)
  t.equal(id, '20261124T021500Z-0123456789ab')
  t.equal(releaseId(new Date('2026-11-24T03:15:00+01:00'), SHA.toUpperCase()), id, 'UTC, lower case')
  t.same(parseReleaseId(id), { createdAt: new Date('2026-11-24T02:15:00Z'), shortSha: '0123456789ab' })
  t.ok(r(9) < r(10) && r(10) < releaseId(new Date(Date.UTC(2027, 0, 1)), SHA), 'string order = time order')
  for (const bad of ['', '..', '../x', '20261124T021500Z-0123456789aB', '20261324T021500Z-0123456789ab',
    '20260230T021500Z-0123456789ab', '20261124T021500Z-0123456789a', `${id}/x`, `${id}.tmp`]) {
    t.equal(parseReleaseId(bad), undefined, JSON.stringify(bad))
  }
  t.throws(() => releaseId(new Date(), 'main'), { code: 'RELEASE_ID_INVALID' })
})

t.test('newReleaseId: the live release of the same commit and second keeps its directory; the new one takes the next second', async (t) => {
  const now = new Date('2026-11-24T02:15:00.900Z')
  const live = releaseId(now, SHA)
  t.equal(newReleaseId(now, SHA, undefined), live, 'nothing live')
  t.equal(newReleaseId(now, SHA, r(59)), live, 'another release live')
  const id = newReleaseId(now, SHA, live)
  t.equal(id, '20261124T021501Z-0123456789ab')
  t.ok(id > live, 'sorts after the live release')
  t.same(parseReleaseId(id)?.shortSha, '0123456789ab')
})

t.test('pickReleasesToPrune', async (t) => {
  const [a, b, c, d, e] = [r(1), r(2), r(3), r(4), r(5)]
  type Row = [string, Parameters<typeof pickReleasesToPrune>[0], string[]]
  const table: Row[] = [
    ['nothing on disk', { releases: [], good: [], keep: 3 }, []],
    ['fewer good than keep', { releases: [a, b], good: [a, b], live: b, keep: 3 }, []],
    ['keeps the newest good ones', { releases: [a, b, c, d], good: [a, b, c, d], live: d, keep: 2 }, [a, b]],
    ['input order does not matter', { releases: [d, a, c, b], good: [c, a, d, b], live: d, keep: 2 }, [a, b]],
    ['failed and unfinished ones go', { releases: [a, b, c, d], good: [a, c], live: c, keep: 5 }, [b, d]],
    ['keep=1 keeps only the newest good', { releases: [a, b, c], good: [a, b, c], live: c, keep: 1 }, [a, b]],
    ['live is never pruned, even when not good', { releases: [a, b, c], good: [a], live: c, keep: 1 }, [b]],
    ['live after a rollback (older than newest good) stays',
      { releases: [a, b, c, d], good: [a, b, c, d], live: b, lastGood: b, keep: 1 }, [a, c]],
    ['lastGood is never pruned',
      { releases: [a, b, c, d, e], good: [a, b, c, d], live: e, lastGood: a, keep: 1 }, [b, c]],
    ['keep=0 keeps only live and lastGood',
      { releases: [a, b, c], good: [a, b, c], live: c, lastGood: b, keep: 0 }, [a]],
    ['good ids not on disk are ignored', { releases: [b, c], good: [a, b, c, d, e], live: c, keep: 1 }, [b]],
    ['duplicates are listed once', { releases: [a, a, b], good: [b], live: b, keep: 1 }, [a]],
  ]
  for (const [name, input, expected] of table) t.same(pickReleasesToPrune(input), expected, name)
})

/** A service dir (`<testdir>/srv`, its records in `<testdir>/records`) with complete releases
 * `ids` and, without a record, `incomplete` ones. */
const serviceDir = async (t: Test, ids: number[], incomplete: number[] = []) => {
  const dir = join(t.testdir(), 'srv')
  for (const n of [...ids, ...incomplete]) {
    const rel = join(dir, 'releases', r(n))
    await mkdir(rel, { recursive: true })
    await writeFile(join(rel, 'index.js'), `// release ${n}\n`)
    if (ids.includes(n)) await recordRelease(P(dir).releaseRecords, meta(r(n)))
  }
  return dir
}

/** the release paths of a service dir made by serviceDir */
const P = (dir: string) => ({ serviceDir: dir, releaseRecords: join(dirname(dir), 'records') })
/** removeTree as the test's own user (the agent runs it as the service user: core/remove-tree.ts) */
const removeTree = (d: string) => rm(d, { recursive: true, force: true })

const entries = async (dir: string) => (await readdir(dir)).sort()

t.test('switchCurrent flips atomically to a relative link and reports the previous release', async (t) => {
  const dir = await serviceDir(t, [1, 2])
  t.same(await switchCurrent(P(dir), r(1)), {}, 'first switch: nothing before')
  t.equal(await readlink(join(dir, 'current')), `releases/${r(1)}`)
  t.same(await switchCurrent(P(dir), r(2)), { previous: r(1) })
  t.equal(await readlink(join(dir, 'current')), `releases/${r(2)}`)
  t.equal(await readFile(join(dir, 'current', 'index.js'), 'utf8'), '// release 2\n')
  t.equal(await readCurrent(dir), r(2))
  t.same(await entries(dir), ['current', 'releases'], 'no temp link left')
  t.same(await switchCurrent(P(dir), r(2)), { previous: r(2) }, 're-running converges')
})

t.test('switchCurrent refuses a release that is missing or incomplete', async (t) => {
  const dir = await serviceDir(t, [1], [2])
  await switchCurrent(P(dir), r(1))
  await t.rejects(switchCurrent(P(dir), r(2)), { code: 'RELEASE_INCOMPLETE', message: /incomplete/ })
  await t.rejects(switchCurrent(P(dir), r(3)), { code: 'RELEASE_INCOMPLETE' }, 'missing')
  await t.rejects(switchCurrent(P(dir), '../../etc'), { code: 'RELEASE_ID_INVALID' })
  // a record planted inside the release (where agents before kept it) makes nothing complete
  const rel2 = join(dir, 'releases', r(2))
  await writeFile(join(rel2, '.bootstrap-release.json'), JSON.stringify({ ...meta(r(2)), good: true }))
  await t.rejects(switchCurrent(P(dir), r(2)), { code: 'RELEASE_INCOMPLETE' })
  t.equal(await readCurrent(dir), r(1), 'current untouched')
  t.same(await entries(dir), ['current', 'releases'])
})

t.test('switchCurrent refuses when current is a real directory and changes nothing', async (t) => {
  const dir = await serviceDir(t, [1])
  await mkdir(join(dir, 'current'))
  await writeFile(join(dir, 'current', 'app.js'), 'hand made')
  await t.rejects(switchCurrent(P(dir), r(1)), { code: 'CURRENT_NOT_SYMLINK', message: /not a symlink/ })
  t.ok((await lstat(join(dir, 'current'))).isDirectory())
  t.equal(await readFile(join(dir, 'current', 'app.js'), 'utf8'), 'hand made')
  t.same(await entries(dir), ['current', 'releases'])
  t.equal(await readCurrent(dir), undefined, 'a real dir is not a release')
})

t.test('readCurrent', async (t) => {
  const dir = await serviceDir(t, [1])
  t.equal(await readCurrent(dir), undefined, 'missing')
  await symlink(`releases/${r(7)}`, join(dir, 'current'))
  t.equal(await readCurrent(dir), undefined, 'dangling')
  t.same(await switchCurrent(P(dir), r(1)), {}, 'a dangling current is no previous release')
  const abs = await serviceDir(t, [1])
  await symlink(join(abs, 'releases', r(1)), join(abs, 'current'))
  t.equal(await readCurrent(abs), r(1), 'absolute link into releases/ is understood')
  const other = await serviceDir(t, [1])
  await symlink('/tmp', join(other, 'current'))
  t.equal(await readCurrent(other), undefined, 'a link outside releases/')
  // releases/ is the service user's: a release it replaced with a link is no release
  const swapped = await serviceDir(t, [1])
  await switchCurrent(P(swapped), r(1))
  await rm(join(swapped, 'releases', r(1)), { recursive: true })
  await symlink('/tmp', join(swapped, 'releases', r(1)))
  t.equal(await readCurrent(swapped), undefined, 'a release swapped for a link')
})

t.test('listReleases lists release dirs only, oldest first', async (t) => {
  t.same(await listReleases(t.testdir()), [], 'no releases dir yet')
  const dir = await serviceDir(t, [3, 1], [2])
  await mkdir(join(dir, 'releases', 'not-a-release'))
  await writeFile(join(dir, 'releases', r(9)), 'a file named like a release')
  t.same(await listReleases(dir), [r(1), r(2), r(3)], 'incomplete ones are listed too, so they get pruned')
})

t.test('removeRelease removes a release, never the live one', async (t) => {
  const dir = await serviceDir(t, [1, 2])
  await switchCurrent(P(dir), r(2))
  await t.rejects(removeRelease(P(dir), r(2), removeTree), { code: 'RELEASE_IN_USE' })
  await t.rejects(removeRelease(P(dir), '..', removeTree), { code: 'RELEASE_ID_INVALID' })
  await removeRelease(P(dir), r(1), removeTree)
  await removeRelease(P(dir), r(5), removeTree) // already gone: converges
  t.same(await listReleases(dir), [r(2)])
  t.equal(await readReleaseRecord(P(dir).releaseRecords, r(1)), undefined, 'its record went first')
  t.ok(await readReleaseRecord(P(dir).releaseRecords, r(2)))
})

t.test('removeStaleTemps removes leftover temp links of a killed switch', async (t) => {
  const dir = await serviceDir(t, [1])
  await switchCurrent(P(dir), r(1))
  await symlink(`releases/${r(1)}`, join(dir, '.current.tmp-deadbeef'))
  await symlink('releases/gone', join(dir, '.current.tmp-cafe'))
  t.same((await removeStaleTemps(dir)).sort(), ['.current.tmp-cafe', '.current.tmp-deadbeef'])
  t.same(await entries(dir), ['current', 'releases'])
  t.same(await removeStaleTemps(join(dir, 'missing')), [])
})
