import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import {
  adoptLegacyRelease, listReleaseRecords, markReleaseGood, readReleaseRecord, recordRelease, removeReleaseRecord, removeStaleRecordTemps,
} from '../../../agent/src/releases/records.js'
import { releaseId } from '../../../agent/src/releases/release-id.js'
import type { RunState } from '../../../agent/src/run/state.js'

const SHA = '0123456789abcdef0123456789abcdef01234567'
const r = (n: number) => releaseId(new Date(Date.UTC(2026, 10, 24, 2, 15, n)), SHA)
const rec = (id: string) => ({ id, commit: SHA, branch: 'main', createdAt: '2026-11-24T02:15:00Z' })

t.test('recordRelease / markReleaseGood / readReleaseRecord: one root-owned JSON file per release', async t => {
  const dir = join(t.testdir(), 'records', 'app')
  t.equal(await readReleaseRecord(dir, r(1)), undefined, 'no record: incomplete')
  await recordRelease(dir, rec(r(1)))
  t.same(await readReleaseRecord(dir, r(1)), rec(r(1)))
  t.equal((await stat(join(dir, `${r(1)}.json`))).mode & 0o777, 0o644, 'readable, no secret in it')
  t.match(await markReleaseGood(dir, r(1)), { id: r(1), good: true })
  t.match(await readReleaseRecord(dir, r(1)), { good: true })
  t.same(await readdir(dir), [`${r(1)}.json`], 'no temp left')
  await t.rejects(markReleaseGood(dir, r(2)), { code: 'RELEASE_INCOMPLETE' })
  await t.rejects(recordRelease(dir, rec('../../etc/passwd')), { code: 'RELEASE_ID_INVALID' })
  await t.rejects(readReleaseRecord(dir, '..'), { code: 'RELEASE_ID_INVALID' })
})

t.test('a record that does not parse, or names another release, is no record', async t => {
  const dir = t.testdir()
  for (const bad of ['{', 'null', '{"id":1}', JSON.stringify({ ...rec(r(1)), good: 'yes' }), JSON.stringify({ ...rec(r(1)), installKey: 7 }), JSON.stringify(rec(r(2)))]) {
    await writeFile(join(dir, `${r(1)}.json`), bad)
    t.equal(await readReleaseRecord(dir, r(1)), undefined, `corrupt record ${bad}`)
  }
})

t.test('listReleaseRecords and removeReleaseRecord', async t => {
  const dir = t.testdir()
  t.same(await listReleaseRecords(join(dir, 'none')), [])
  await recordRelease(dir, rec(r(2)))
  await recordRelease(dir, rec(r(1)))
  await writeFile(join(dir, 'notes.json'), '{}')
  t.same(await listReleaseRecords(dir), [r(1), r(2)])
  await removeReleaseRecord(dir, r(1))
  await removeReleaseRecord(dir, r(1))
  t.same(await listReleaseRecords(dir), [r(2)])
})

t.test('adoptLegacyRelease: only the live release the previous state.json vouches for', async t => {
  const dir = t.testdir()
  const prev = (o: Partial<RunState>): RunState => ({
    version: 1, runId: 'run-1', command: 'run', reason: 'boot', mode: 'aws', pid: 1, startedAt: '2026-11-24T02:15:01Z',
    outcome: 'success', service: 'app', branch: 'main', commit: SHA, release: r(1), phases: [], ...o,
  })
  t.equal(await adoptLegacyRelease(dir, r(1), undefined, 'app'), undefined, 'no previous run')
  for (const [why, o] of [
    ['another service', { service: 'web' }],
    ['another release', { release: r(2) }],
    ['a failed run', { outcome: 'failed' as const }],
    ['a rolled-back run', { outcome: 'rolled-back' as const }],
    ['a commit that does not match the id', { commit: 'f'.repeat(40) }],
    ['no commit recorded', { commit: undefined }],
  ] as const) {
    t.equal(await adoptLegacyRelease(dir, r(1), prev(o as Partial<RunState>), 'app'), undefined, why)
  }
  t.same(await listReleaseRecords(dir), [], 'nothing recorded for any of them')
  t.same(await adoptLegacyRelease(dir, r(1), prev({}), 'app'), {
    id: r(1), commit: SHA, branch: 'main', createdAt: '2026-11-24T02:15:01.000Z', good: true, adoptedFrom: 'state.json of run run-1 (success)',
  })
  t.match(JSON.parse(await readFile(join(dir, `${r(1)}.json`), 'utf8')), { good: true }, 'written')
  const warm = await adoptLegacyRelease(join(dir, 'w'), r(1), prev({ outcome: 'prepared' }), 'app')
  t.match(warm, { id: r(1), adoptedFrom: /prepared/ })
  t.equal(warm?.good, undefined, 'a prepared release is not good: it never served')
})

t.test('removeStaleRecordTemps: the temp files of a killed record write, nothing else', async t => {
  const dir = t.testdir()
  await recordRelease(dir, rec(r(1)))
  await writeFile(join(dir, `.${r(2)}.json.tmp-0123abcd`), '{')
  t.equal(await removeStaleRecordTemps(dir), 1)
  t.same(await readdir(dir), [`${r(1)}.json`])
  t.equal(await removeStaleRecordTemps(join(dir, 'none')), 0)
})
