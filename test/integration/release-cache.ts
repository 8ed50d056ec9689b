/**
 * The release cache end to end: the real agent CLI in AWS mode, S3 through the real SDK against
 * moto's S3 (path-style, behind a fault proxy), a private repository over smart HTTP, a real npm
 * tarball server, real npm ci, builds and PM2. Simulated instances of one Auto Scaling group
 * boot one after the other, each with its own root:
 *
 * - a miss deploys from source and publishes after CONTINUE (archive, index entry, pointer);
 * - the next instance boots from the cache: no clone, no npm ci, no build;
 * - with the git remote refused and npm's registry closed, a boot takes the commit from the
 *   branch pointer and the release from the cache; with the fallback off it fails as before;
 * - corrupt, truncated or missing objects, AccessDenied, throttling, S3 unreachable, and a hostile
 *   archive behind a valid entry: a warning naming the object and the reason, then the source path;
 * - `plan` shows the key and whether it would hit, reading only the index entry;
 * - no secret value in any object of the bucket; the S3 actions called are exactly the policy's.
 */
import t, { type Test } from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, lstatSync, readdirSync, realpathSync, statSync } from 'node:fs'
import { basename, join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { Parser, type ReadEntry } from 'tar'
import { readFileSync } from 'node:fs'
import { startCacheWorld, PREFIX, SERVICE, type Instance } from '../helpers/cache-world.js'
import { findLeaks, leaksAfterRun } from '../helpers/leak-scan.js'
import { HOSTILE_CASES, HONEST_ENTRIES, tarGz } from '../helpers/hostile-archives.js'
import { freePort, getJson, killPm2, removeSandbox, REPO, runCli, sandboxDir, type CliResult } from '../helpers/sandbox.js'

const dir = sandboxDir('release-cache')
t.teardown(() => removeSandbox(dir))
const w = await startCacheWorld(t, dir)
const { world, s3Proxy, gitProxy, registryProxy } = w

const port = await freePort()
const url = `http://127.0.0.1:${port}/health`
const fp = (v: string) => createHash('sha256').update(v).digest('hex')

const exits = (t: Test, r: CliResult, code: number) =>
  t.equal(r.code, code, `exit ${code}`, r.code === code ? {} : { stderr: r.stderr, stdout: r.stdout.slice(-6000) })
const phase = (i: Instance, name: string) => i.state().phases.find(p => p.name === name)
const completions = () => world.proxy.completions()

/** S3 operations the agent called (moto's recorder), across all cases: the IAM proof */
const s3Calls = new Set<string>()
const record = async <T>(fn: () => Promise<T>): Promise<T> => {
  await world.moto.startRecording()
  try {
    return await fn()
  } finally {
    await world.moto.stopRecording()
    for (const a of await world.moto.recordedActions()) if (a.service === 's3') s3Calls.add(a.action)
  }
}

/** the instance that served last is stopped: every instance of this file serves on one port */
let serving: Instance | undefined
const boot = async (i: Instance, flags: Record<string, string> = {}, env: Record<string, string> = {}): Promise<CliResult> => {
  if (serving && serving !== i) killPm2(serving.root)
  serving = i
  return record(() => i.run(flags, env))
}

const indexKeyOf = (commit: string) => [...(await_objects_cache ?? new Map()).keys()].find(k => k.includes(`/index/${commit}/`))
let await_objects_cache: Map<string, Buffer> | undefined
const objects = async () => (await_objects_cache = await w.objects())

interface EntryJson { key: string; commit: string; archive: { object: string; sha256: string; bytes: number; entries: number; unpackedBytes: number }; publishedBy: string }
const entryOf = async (commit: string): Promise<{ key: string; entry: EntryJson } | undefined> => {
  const all = await objects()
  const key = indexKeyOf(commit)
  const body = key === undefined ? undefined : all.get(key)
  return key === undefined || body === undefined ? undefined : { key, entry: JSON.parse(body.toString('utf8')) as EntryJson }
}

/** paths in a gzip tar (a published archive) */
const archivePaths = (gz: Buffer): string[] => {
  const paths: string[] = []
  const p = new Parser({ strict: true })
  p.on('entry', (e: ReadEntry) => {
    paths.push(e.path)
    e.resume()
  })
  p.end(gunzipSync(gz))
  return paths
}

const noLeaks = (t: Test, i: Instance, r: CliResult) => t.same(leaksAfterRun(w.secrets, i.root, i.envFile, r), [], 'no secret value outside the env file and the service')

let v1 = ''

t.test('1. a miss deploys from source, then publishes after CONTINUE: archive, index entry, branch pointer', async t => {
  v1 = await w.commit({ greeting: 'v1', port })
  const a = await w.instance(0)
  const before = completions().length
  const r = await boot(a)
  exits(t, r, 0)
  const st = a.state()
  t.equal(st.releaseFrom, 'source')
  t.match(st.cache?.lookup, new RegExp(`^miss: s3://fleet-releases/${PREFIX}/app/index/${v1}/`))
  t.match(phase(a, 'install'), { status: 'ok', detail: 'npm ci' })
  t.match(phase(a, 'build'), { status: 'ok' })
  const names = st.phases.map(p => p.name)
  t.ok(names.indexOf('complete') < names.indexOf('publish'), 'publish runs after the lifecycle hook was completed')
  t.match(phase(a, 'complete')?.detail, /CONTINUE sent/)
  t.match(completions().slice(before), [{ instanceId: a.instanceId, result: 'CONTINUE' }])
  t.match(phase(a, 'publish'), { status: 'ok', detail: new RegExp(`published s3://fleet-releases/${PREFIX}/app/index/${v1}/`) })
  t.match(st.cache?.published, /^published /)

  const found = await entryOf(v1)
  if (!found) throw new Error('no index entry was published')
  const { entry } = found
  const all = await objects()
  const archive = all.get(entry.archive.object)
  if (!archive) throw new Error(`the entry names ${entry.archive.object}, which is not in the bucket`)
  t.equal(createHash('sha256').update(archive).digest('hex'), entry.archive.sha256, "the entry's sha256 is the archive's")
  t.equal(archive.length, entry.archive.bytes)
  t.equal(entry.archive.object, `${PREFIX}/app/archives/${entry.key}/${entry.archive.sha256}.tar.gz`)
  t.equal(entry.publishedBy, a.instanceId)
  const paths = archivePaths(archive)
  for (const p of ['server.js', 'package.json', 'node_modules/tiny/index.js', 'dist/build.json']) t.ok(paths.includes(p), `the archive holds ${p}`)
  t.notOk(paths.some(p => p === '.git' || p.startsWith('.git/')), 'no .git')
  t.notOk(paths.includes('.bootstrap-release.json'), "no agent record")
  const pointer = [...all.keys()].find(k => k.startsWith(`${PREFIX}/app/branches/`) && k.endsWith('/stage.json'))
  t.ok(pointer, 'the branch pointer of stage')
  t.match(JSON.parse(all.get(pointer ?? '')?.toString() ?? '{}'), { commit: v1, key: entry.key, branch: 'stage', service: SERVICE })
  noLeaks(t, a, r)
})

t.test('2. a second instance boots from the cache: no clone, no npm ci, no build; owned by the service user', async t => {
  const b = await w.instance(1)
  const tarballs = w.registry.requests('/tiny/-/tiny-1.0.0.tgz')
  const r = await boot(b)
  exits(t, r, 0)
  const st = b.state()
  t.equal(st.releaseFrom, 'cache')
  t.match(st.cache?.lookup, /^hit: /)
  t.match(phase(b, 'fetch')?.detail, new RegExp(`restored ${v1.slice(0, 12)} from the release cache`))
  t.match(phase(b, 'install'), { status: 'skipped', detail: 'node_modules came with the release cache archive' })
  t.match(phase(b, 'build'), { status: 'skipped', detail: /build output came with the release cache archive/ })
  t.match(phase(b, 'publish'), { status: 'skipped', detail: /came from the release cache/ })
  t.notOk(existsSync(join(b.serviceDir, 'current/.git')), 'no clone (a clone has its .git)')
  t.equal(w.registry.requests('/tiny/-/tiny-1.0.0.tgz'), tarballs, 'no package fetched')
  const body = await getJson(url)
  t.equal(body['greeting'], 'v1')
  t.equal(body['tiny'], 'tiny')
  t.equal(body['apiKey'], fp(w.apiKey), 'the secrets of this instance reached the service')
  const a = await w.instance(0)
  t.same(body['build'], JSON.parse(readFileSync(join(a.serviceDir, 'current/dist/build.json'), 'utf8')), 'the build output of the publishing instance, byte for byte')
  const release = realpathSync(join(b.serviceDir, 'current'))
  const uid = statSync(join(a.serviceDir, 'current/server.js')).uid
  for (const f of ['', 'server.js', 'node_modules', 'node_modules/tiny/index.js', 'dist/build.json']) {
    t.equal(lstatSync(join(release, f)).uid, uid, `${f || 'the release'} belongs to the service user, as a clone's would`)
  }
  t.not(uid, 0)
  noLeaks(t, b, r)
})

/** S3's own error document, as the proxy answers in S3's place */
const s3Error = (status: number, code: string, message: string) => ({
  kind: 'status' as const, status, headers: { 'content-type': 'application/xml' },
  body: `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>4442587FB7D0A2F9</RequestId></Error>`,
})
const isIndexGet = (r: { method: string; path: string }) => r.method === 'GET' && r.path.includes('/index/')

t.test('3. git remote down, npm registry closed: the branch pointer names the commit, the cache has the release', async t => {
  const c = await w.instance(2)
  await gitProxy.refuse()
  await registryProxy.refuse()
  t.teardown(async () => {
    await gitProxy.accept()
    await registryProxy.accept()
  })
  const r = await boot(c)
  exits(t, r, 0)
  const st = c.state()
  t.equal(st.commit, v1)
  t.equal(st.releaseFrom, 'cache')
  t.match(st.cache?.commitFromPointer, new RegExp(`^branch pointer s3://fleet-releases/${PREFIX}/app/branches/.*/stage\\.json \\(published .*\\); the git remote could not be reached: git could not reach`))
  t.match(r.stdout, /git remote unreachable: deploying [0-9a-f]{12}, the last commit the release cache published healthy for app on stage/)
  t.equal((await getJson(url))['greeting'], 'v1')
  const status = await runCli(['status', '--root', c.root], {})
  t.match(status.stdout, /release from\s+the release cache \(no clone, npm ci or build\)/)
  t.match(status.stdout, /commit from\s+branch pointer s3:\/\//)
  noLeaks(t, c, r)
})

t.test('4. the remote down without a usable pointer: the run fails as it does without a cache', async t => {
  const d = await w.instance(3)
  await gitProxy.refuse()
  t.teardown(() => gitProxy.accept())
  t.test('fallback turned off', async t => {
    const r = await boot(d, {}, { BOOTSTRAP_RELEASE_CACHE_FALLBACK: 'off' })
    exits(t, r, 1)
    t.equal(d.state().error?.code, 'GIT_UNREACHABLE')
    t.equal(d.state().cache?.commitFromPointer, undefined)
  })
  t.test('a branch nothing was ever published for', async t => {
    const r = await boot(d, { branch: 'main' })
    exits(t, r, 1)
    t.equal(d.state().error?.code, 'GIT_UNREACHABLE')
    t.match(r.stdout, /release cache: no usable branch pointer/)
  })
  t.test('S3 unreachable as well', async t => {
    await s3Proxy.refuse()
    t.teardown(() => s3Proxy.accept())
    const r = await boot(d, {}, { BOOTSTRAP_AWS_TIMEOUT: '2' })
    exits(t, r, 1)
    t.equal(d.state().error?.code, 'GIT_UNREACHABLE', "git's failure is the one reported")
    t.match(r.stdout, /release cache: the branch pointer could not be read either/)
  })
})

/** A case where the cache cannot serve: a warning naming the object and the reason, the source path, success. */
const fallsBack = async (t: Test, i: Instance, r: CliResult, reason: RegExp, object: RegExp) => {
  exits(t, r, 0)
  const st = i.state()
  t.equal(st.releaseFrom, 'source', 'deployed from source')
  t.equal(st.outcome, 'success')
  t.match(phase(i, 'install'), { status: 'ok', detail: 'npm ci' })
  const warning = r.stdout.split('\n').find(l => l.includes('release cache: entry not used'))
  t.ok(warning, 'one warning line', { stdout: r.stdout.slice(-3000) })
  t.match(JSON.parse(warning ?? '{}'), { level: 'warn', object, reason })
  t.match(st.cache?.lookup, /^unusable: /)
}

/** the next instance that never booted */
let next = 4

t.test('5. every way the cache can fail: a warning naming the object and the reason, then the source path', async t => {
  const fresh = async () => w.instance(next++)

  t.test('a corrupt archive (same size, other bytes): the checksum does not match, nothing is extracted; this run replaces the entry', async t => {
    const found = await entryOf(v1)
    if (!found) throw new Error('no entry')
    const object = found.entry.archive.object
    await w.putObject(object, Buffer.alloc(found.entry.archive.bytes, 0x41))
    const i = await fresh()
    const r = await boot(i)
    await fallsBack(t, i, r, /^checksum mismatch: the archive's sha256 is [0-9a-f]{64}, its index entry says [0-9a-f]{64}; not extracted$/, new RegExp(`^s3://fleet-releases/${object.replaceAll('/', '\\/')}$`))
    t.same(readdirSync(join(i.serviceDir, 'releases')).filter(n => n.startsWith('.extract')), [], 'no extraction was even begun')
    t.match(phase(i, 'publish'), { status: 'ok' }, 'published again')
    const again = await entryOf(v1)
    t.not(again?.entry.archive.sha256, found.entry.archive.sha256, 'the entry names the new archive')
  })

  t.test('a truncated archive: refused on its size before its body is read', async t => {
    const found = await entryOf(v1)
    if (!found) throw new Error('no entry')
    const all = await objects()
    await w.putObject(found.entry.archive.object, (all.get(found.entry.archive.object) ?? Buffer.alloc(0)).subarray(0, 100))
    const i = await fresh()
    const r = await boot(i)
    await fallsBack(t, i, r, new RegExp(`is 100 bytes, its index entry says ${found.entry.archive.bytes}: truncated or replaced`), /\/archives\//)
    t.match(phase(i, 'publish'), { status: 'ok' })
  })

  t.test('the index entry missing: a miss, the source path, published again', async t => {
    const found = await entryOf(v1)
    if (!found) throw new Error('no entry')
    await w.deleteObject(found.key)
    const i = await fresh()
    const r = await boot(i)
    exits(t, r, 0)
    t.match(i.state().cache?.lookup, /^miss: /)
    t.equal(i.state().releaseFrom, 'source')
    t.ok(await entryOf(v1), 'the entry is back')
  })

  t.test('AccessDenied on the index entry and on publishing: warnings, the run succeeds', async t => {
    s3Proxy.fail(s3Error(403, 'AccessDenied', 'Access Denied'))
    t.teardown(() => s3Proxy.clear())
    const i = await fresh()
    const r = await boot(i)
    await fallsBack(t, i, r, /AccessDenied \(HTTP 403\)/, /\/index\//)
    t.match(phase(i, 'publish'), { status: 'failed', detail: /AWS s3:GetObject on s3:\/\/fleet-releases\/.* failed: AccessDenied/ }, 'the publisher looks for an entry first')
    t.match(i.state().cache?.published, /^not published: /)
    t.match(r.stdout, /publish failed: /)
  })

  t.test('throttled: SlowDown retried, then a hit; SlowDown throughout: the source path', async t => {
    s3Proxy.fail(s3Error(503, 'SlowDown', 'Please reduce your request rate.'), 2, isIndexGet)
    const i = await fresh()
    const r = await boot(i)
    exits(t, r, 0)
    t.equal(i.state().releaseFrom, 'cache', 'two SlowDowns, then the entry')
    t.match(r.stdout, /AWS GetObject failed \(SlowDown\); retrying/)
    await s3Proxy.clear()
    s3Proxy.fail(s3Error(503, 'SlowDown', 'Please reduce your request rate.'))
    t.teardown(() => s3Proxy.clear())
    const j = await fresh()
    const r2 = await boot(j, {}, { BOOTSTRAP_AWS_TIMEOUT: '2' })
    await fallsBack(t, j, r2, /SlowDown \(HTTP 503\)/, /\/index\//)
  })

  t.test('S3 unreachable: the source path; publishing fails with a warning', async t => {
    await s3Proxy.refuse()
    t.teardown(() => s3Proxy.accept())
    const i = await fresh()
    const r = await boot(i, {}, { BOOTSTRAP_AWS_TIMEOUT: '2' })
    await fallsBack(t, i, r, /ECONNREFUSED/, /\/index\//)
    t.match(phase(i, 'publish'), { status: 'failed' })
  })
})

t.test('6. a hostile archive behind a valid entry (right sha256 and sizes): refused by the extraction, nothing written outside, the source path', async t => {
  const found = await entryOf(v1)
  if (!found) throw new Error('no entry')
  for (const c of HOSTILE_CASES.filter(x => /\.\.|symlink, then|setuid|character device/.test(x.name))) {
    t.test(c.name, async t => {
      const gz = tarGz([...HONEST_ENTRIES, ...c.entries])
      const sha256 = createHash('sha256').update(gz).digest('hex')
      const object = `${PREFIX}/app/archives/${found.entry.key}/${sha256}.tar.gz`
      await w.putObject(object, gz)
      const entry = { ...found.entry, archive: { object, sha256, bytes: gz.length, unpackedBytes: 1 << 20, entries: 100 } }
      await w.putObject(found.key, JSON.stringify(entry))
      const i = await w.instance(next++)
      const outside = readdirSync(dir)
      const r = await boot(i)
      await fallsBack(t, i, r, /^archive refused: /, new RegExp(object.replaceAll('/', '\\/')))
      t.same(readdirSync(dir).filter(x => x !== basename(i.root)), outside, 'nothing new beside the instance roots')
      for (const o of c.outside) {
        t.notOk(existsSync(join(i.serviceDir, o)), `${o} not in the service directory`)
        t.notOk(existsSync(join(i.serviceDir, 'releases', o)), `${o} not in the releases directory`)
      }
      t.same(readdirSync(join(i.serviceDir, 'releases')).filter(x => !/^\d{8}T\d{6}Z-[0-9a-f]{12}$/.test(x)), [], 'no temporary directory left')
      t.match(phase(i, 'publish'), { status: 'ok' }, 'the entry is replaced by an honest one')
    })
  }
})

t.test('7. plan: the cache key and whether a run would hit, reading only the index entry', async t => {
  const i = await w.instance(0)
  const plan = async () => {
    const r = await record(() => runCli(['plan', '--root', i.root, '--json', '--repository', w.repo.fileUrl], { ...i.env }))
    exits(t, r, 0)
    return JSON.parse(r.stdout) as { commit: string; releaseCache: { location: string; key: string; index: string; wouldHit: boolean; note: string } }
  }
  s3Calls.clear()
  const hit = await plan()
  const found = await entryOf(v1)
  t.equal(hit.commit, v1)
  t.match(hit.releaseCache, { location: `s3://fleet-releases/${PREFIX}`, key: found?.entry.key, wouldHit: true, note: /^hit: published by i-/ })
  t.equal(hit.releaseCache.index, `s3://fleet-releases/${found?.key}`)
  t.same([...s3Calls], ['GetObject'], 'GetObject of the index entry, nothing else')
  const v2 = await w.commit({ greeting: 'v2', port })
  const miss = await plan()
  t.equal(miss.commit, v2)
  t.match(miss.releaseCache, { wouldHit: false, note: /^miss/ })
  t.not(miss.releaseCache.key, hit.releaseCache.key)
  v1 = v2
})

t.test('8. a multipart upload cut short: aborted, no index entry visible; the next run publishes (converges)', async t => {
  const big = await w.commit({ greeting: 'big', port, extra: { 'assets/blob.txt': randomBytes(10 * 1024 * 1024).toString('base64') } })
  const i = await w.instance(next++)
  s3Proxy.fail(s3Error(500, 'InternalError', 'We encountered an internal error. Please try again.'), Number.POSITIVE_INFINITY, r => r.method === 'PUT' && r.path.includes('partNumber='))
  const r = await boot(i, {}, { BOOTSTRAP_AWS_TIMEOUT: '3' })
  await s3Proxy.clear()
  exits(t, r, 0)
  t.match(phase(i, 'publish'), { status: 'failed', detail: /AWS s3:PutObject on .*\/archives\/.* failed/ })
  t.equal(await entryOf(big), undefined, 'no index entry: nothing points at a partial archive')
  t.ok(s3Calls.has('AbortMultipartUpload'), 'the multipart upload was aborted')
  const again = await boot(i)
  exits(t, again, 0)
  t.equal(i.state().releaseFrom, 'live')
  t.match(phase(i, 'publish'), { status: 'ok', detail: /published / }, 'the live release, not published yet, is published now')
  const found = await entryOf(big)
  t.ok(found, 'the entry is there')
  t.ok(s3Calls.has('CompleteMultipartUpload'), 'as a multipart upload')
  const third = await boot(i)
  exits(t, third, 0)
  t.match(phase(i, 'publish'), { status: 'skipped', detail: /is in the release cache/ }, 'and never again')
})

t.test('9. a service that writes its secret into its release: left out when written after the deploy, refused when backdated', async t => {
  t.test('written at runtime: left out of the archive', async t => {
    const c = await w.commit({ greeting: 'writes', port, writesSecret: 'fresh' })
    const i = await w.instance(next++)
    const r = await boot(i)
    exits(t, r, 0)
    t.match(phase(i, 'publish'), { status: 'ok' })
    t.match(r.stdout, /1 file\(s\) written after the release was deployed \(runtime state\) left out of the archive/)
    const found = await entryOf(c)
    const archive = (await objects()).get(found?.entry.archive.object ?? '')
    t.notOk(archivePaths(archive ?? Buffer.alloc(0)).includes('runtime/env-cache.txt'), 'not in the archive')
  })
  t.test('backdated: the secret scan refuses to publish, naming the file and the key', async t => {
    const c = await w.commit({ greeting: 'backdates', port, writesSecret: 'backdated' })
    const i = await w.instance(next++)
    const r = await boot(i)
    exits(t, r, 0)
    t.match(phase(i, 'publish'), { status: 'failed', detail: 'the release holds the value of secret key API_KEY in "runtime/env-cache.txt": not published' })
    t.equal(await entryOf(c), undefined, 'nothing published')
    t.same([...(await objects()).keys()].filter(k => k.includes(c)), [], 'no object of that commit')
    // the one file the service itself wrote its secret to is the only place it is, beside the env file
    const own = join(realpathSync(join(i.serviceDir, 'current')), 'runtime/env-cache.txt')
    t.same(findLeaks(w.secrets, { root: i.root, allow: [i.envFile, own], texts: { stdout: r.stdout, stderr: r.stderr }, cmdlines: r.cmdlines }), [], 'no secret value anywhere else')
  })
})

t.test('10. no secret value in any object of the bucket (archives unpacked)', async t => {
  const texts: Record<string, string> = {}
  // the corrupt and truncated archives of case 5 are still there (unreferenced): scanned as they are
  const unpacked = (body: Buffer) => {
    try {
      return gunzipSync(body)
    } catch {
      return body
    }
  }
  for (const [key, body] of await objects()) texts[key] = (key.endsWith('.tar.gz') ? unpacked(body) : body).toString('latin1')
  t.ok(Object.keys(texts).some(k => k.endsWith('.tar.gz')), 'archives were scanned')
  const values = w.secrets.map(v => Buffer.from(v).toString('latin1'))
  t.same(findLeaks(values, { root: join(dir, 'git'), allow: [], texts }), [], 'no value in any object')
})

t.test('11. the S3 actions called are exactly the ones iam/agent-policy.json grants', async t => {
  const policy = JSON.parse(readFileSync(join(REPO, 'iam/agent-policy.json'), 'utf8')) as { Statement: { Action: string | string[] }[] }
  const granted = new Set(policy.Statement.flatMap(s => (Array.isArray(s.Action) ? s.Action : [s.Action])).filter(a => a.startsWith('s3:')))
  /** S3 operations -> the IAM action that allows them */
  const IAM: Record<string, string> = {
    GetObject: 's3:GetObject', HeadObject: 's3:GetObject', PutObject: 's3:PutObject', CreateMultipartUpload: 's3:PutObject',
    UploadPart: 's3:PutObject', CompleteMultipartUpload: 's3:PutObject', AbortMultipartUpload: 's3:AbortMultipartUpload',
  }
  const needed = new Set([...s3Calls].map(op => IAM[op] ?? `unmapped S3 operation ${op}`))
  t.same([...needed].filter(a => !granted.has(a)).sort(), [], 'every S3 action called is granted')
  // s3:ListBucket is no call of the agent: S3 consults it to answer 404 (not 403) for a missing key
  t.same([...granted].filter(a => !needed.has(a) && a !== 's3:ListBucket').sort(), [], 'every S3 action granted was called')
  t.ok(granted.has('s3:ListBucket'), 'ListBucket, so a miss reads as a miss')
})

t.test('12. a release prepared in a warm pool from source is published once it passed its health gate; warm pools prepare from the cache too', async t => {
  const warmed = async (i: Instance) => {
    i.imds.set({ lifecycleState: 'Warmed:Stopped' })
    const r = await boot(i)
    exits(t, r, 0)
    t.equal(i.state().outcome, 'prepared')
    t.match(phase(i, 'start'), { status: 'skipped', detail: 'warm pool: prepared, not started' })
    t.match(phase(i, 'publish'), { status: 'skipped', detail: /warm pool: no health gate passed yet/ })
    // the instance is stopped in the pool, then leaves it
    killPm2(i.root)
    i.imds.set({ lifecycleState: 'InService' })
    const again = await boot(i)
    exits(t, again, 0)
    t.equal(i.state().outcome, 'success')
    t.equal(i.state().releaseFrom, 'live', 'the prepared release is started, nothing fetched')
  }
  t.test('prepared from source (a miss): published by the run that started it', async t => {
    const c = await w.commit({ greeting: 'warm', port })
    const i = await w.instance(next++)
    await warmed(i)
    t.match(phase(i, 'publish'), { status: 'ok', detail: /published / })
    t.ok(await entryOf(c))
  })
  t.test('prepared from the cache (the commit just published): no clone, no npm ci, no build', async t => {
    const i = await w.instance(next++)
    await warmed(i)
    t.match(i.state().phases.find(p => p.name === 'publish'), { status: 'skipped', detail: /came from the release cache/ })
    t.notOk(existsSync(join(i.serviceDir, 'current/.git')), 'from the cache')
  })
})
