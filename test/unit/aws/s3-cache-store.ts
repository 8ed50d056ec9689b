/**
 * aws/s3-cache-store.ts against a fake S3Api (our own interface, not the SDK): what each S3
 * answer becomes (a missing key is "no entry", a missing bucket or a denial is an error naming
 * the action and the object), the retry policy, the size check before a body is read, the
 * conditional write, and when addressing is path-style. The real SDK against moto's S3 is
 * test/integration/release-cache.ts.
 */
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { createS3CacheStore, PART_BYTES, usesCustomEndpoint, type S3Api } from '../../../agent/src/aws/s3-cache-store.js'
import { isAgentError } from '../../../agent/src/core/errors.js'
import { rejected } from '../../helpers/thrown.js'

const sdkError = (name: string, status: number) =>
  Object.assign(new Error(`${name} happened`), { name, $fault: status >= 500 ? 'server' : 'client', $metadata: { httpStatusCode: status } })

const bodyOf = async (b: unknown): Promise<Buffer> => {
  if (b instanceof Readable) {
    const chunks: Buffer[] = []
    for await (const c of b) chunks.push(Buffer.from(c as Uint8Array))
    return Buffer.concat(chunks)
  }
  return Buffer.from(String(b))
}

type Action = 'get' | 'put' | 'create' | 'part' | 'complete' | 'abort'

/** An S3 of objects in memory; `failures` are thrown (in order) by the next calls of their action. */
const fakeS3 = (objects: Map<string, Buffer>, failures: { action: Action; error?: Error; body?: Readable; times?: number }[] = []) => {
  const calls: { action: string; input: Record<string, unknown> }[] = []
  const uploads = new Map<string, Map<number, Buffer>>()
  const take = (action: Action) => {
    const f = failures.find(x => x.action === action && (x.times ?? 1) > 0)
    if (f) f.times = (f.times ?? 1) - 1
    return f
  }
  const api: S3Api = {
    async getObject(input) {
      calls.push({ action: 'GetObject', input: { ...input } })
      const f = take('get')
      if (f?.error) throw f.error
      const body = objects.get(input.Key ?? '')
      if (body === undefined) throw sdkError('NoSuchKey', 404)
      return { Body: f?.body ?? Readable.from([body]), ContentLength: body.length }
    },
    async putObject(input) {
      calls.push({ action: 'PutObject', input: { ...input, Body: undefined } })
      const f = take('put')
      if (f?.error) throw f.error
      if (input.IfNoneMatch === '*' && objects.has(input.Key ?? '')) throw sdkError('PreconditionFailed', 412)
      objects.set(input.Key ?? '', await bodyOf(input.Body))
      return {}
    },
    async createMultipartUpload(input) {
      calls.push({ action: 'CreateMultipartUpload', input: { ...input } })
      const id = `upload-${uploads.size + 1}`
      uploads.set(id, new Map())
      return { UploadId: id }
    },
    async uploadPart(input) {
      const body = await bodyOf(input.Body)
      calls.push({ action: 'UploadPart', input: { ...input, Body: undefined } })
      const f = take('part')
      if (f?.error) throw f.error
      if (createHash('sha256').update(body).digest('base64') !== input.ChecksumSHA256) throw sdkError('BadDigest', 400)
      uploads.get(input.UploadId ?? '')?.set(input.PartNumber ?? 0, body)
      return { ETag: `"etag-${input.PartNumber}"` }
    },
    async completeMultipartUpload(input) {
      calls.push({ action: 'CompleteMultipartUpload', input: { ...input } })
      const parts = uploads.get(input.UploadId ?? '') ?? new Map<number, Buffer>()
      objects.set(input.Key ?? '', Buffer.concat((input.MultipartUpload?.Parts ?? []).map(p => parts.get(p.PartNumber ?? 0) ?? Buffer.alloc(0))))
      return {}
    },
    async abortMultipartUpload(input) {
      calls.push({ action: 'AbortMultipartUpload', input: { ...input } })
      uploads.delete(input.UploadId ?? '')
      return {}
    },
  }
  return { api, calls }
}

const store = (api: S3Api) => createS3CacheStore({ bucket: 'fleet', prefix: 'stage', region: 'us-east-1', env: {}, api, retry: { baseMs: 1, capMs: 2, totalMs: 5000 } })

t.test('getText: the document; a missing key is undefined; a missing bucket, a denial or an oversize document is an error', async t => {
  const objects = new Map([['stage/app/index/x.json', Buffer.from('{"a":1}')], ['stage/big.json', Buffer.alloc(70_000, 0x20)]])
  const s3 = fakeS3(objects, [{ action: 'get', error: sdkError('SlowDown', 503) }])
  const s = store(s3.api)
  t.equal(s.location, 's3://fleet/stage')
  t.equal(await s.getText('stage/app/index/x.json', 65536), '{"a":1}', 'read after one SlowDown (retried)')
  t.equal(s3.calls.length, 2)
  t.equal(await s.getText('stage/app/index/none.json', 65536), undefined, 'NoSuchKey: no entry')
  t.match(await rejected(() => s.getText('stage/big.json', 65536)), { code: 'CACHE_DOCUMENT_INVALID', message: /s3:\/\/fleet\/stage\/big\.json is larger than 65536 bytes/ })

  const denied = fakeS3(objects, [{ action: 'get', error: sdkError('AccessDenied', 403) }])
  const e = await rejected(() => store(denied.api).getText('stage/app/index/x.json', 65536))
  if (!isAgentError(e)) throw e
  t.equal(e.code, 'AWS_ACCESS_DENIED')
  t.match(e.message, /AWS s3:GetObject on s3:\/\/fleet\/stage\/app\/index\/x\.json failed: AccessDenied \(HTTP 403\)/)
  t.match(e.remedy, /add s3:GetObject on s3:\/\/fleet\/stage\/app\/index\/x\.json to the instance profile/)
  t.equal(denied.calls.length, 1, 'a denial is not retried')

  const noBucket = fakeS3(objects, [{ action: 'get', error: sdkError('NoSuchBucket', 404) }])
  t.match(await rejected(() => store(noBucket.api).getText('stage/app/index/x.json', 65536)), { code: 'AWS_NOT_FOUND', message: /NoSuchBucket/ }, 'a missing bucket is no miss')
  t.equal(s3.calls.every(c => c.input['ChecksumMode'] === 'ENABLED'), true, "documents are read with S3's checksum checked")
})

t.test('download: streamed into a 0600 file; the size is checked before the body is read; a cut transfer is retried', async t => {
  const dir = t.testdir()
  const body = Buffer.from('archive bytes '.repeat(100))
  const objects = new Map([['stage/app/archives/k/s.tar.gz', body]])
  const cut = new Readable({ read() {} })
  cut.push(body.subarray(0, 10))
  setImmediate(() => cut.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' })))
  const s3 = fakeS3(objects, [{ action: 'get', body: cut }])
  const file = join(dir, 'dl')
  await store(s3.api).download('stage/app/archives/k/s.tar.gz', file, body.length)
  t.same(readFileSync(file), body, 'the second attempt rewrote the file whole')
  t.equal(statSync(file).mode & 0o777, 0o600)
  t.equal(s3.calls.length, 2)

  const short = fakeS3(objects)
  const e = await rejected(() => store(short.api).download('stage/app/archives/k/s.tar.gz', join(dir, 'dl2'), body.length + 1))
  t.match(e, { code: 'CACHE_ARCHIVE_SIZE', message: new RegExp(`s3://fleet/stage/app/archives/k/s.tar.gz is ${body.length} bytes, its index entry says ${body.length + 1}: truncated or replaced`) })
  t.equal(short.calls.length, 1, 'not retried')
})

t.test('upload, small: one PutObject streamed from the file, with its SHA-256 for S3 to check; retried after a 500', async t => {
  const dir = t.testdir({ 'a.tar.gz': 'the archive' })
  const objects = new Map<string, Buffer>()
  const s3 = fakeS3(objects, [{ action: 'put', error: sdkError('InternalError', 500) }])
  await store(s3.api).upload('stage/app/archives/k/s.tar.gz', join(dir, 'a.tar.gz'), 'application/gzip')
  t.equal(objects.get('stage/app/archives/k/s.tar.gz')?.toString(), 'the archive')
  t.match(s3.calls[1]?.input, {
    Bucket: 'fleet', Key: 'stage/app/archives/k/s.tar.gz', ContentType: 'application/gzip', ContentLength: 11,
    ChecksumSHA256: createHash('sha256').update('the archive').digest('base64'),
  })
  t.same(s3.calls.map(c => c.action), ['PutObject', 'PutObject'])
})

t.test('upload, large: a multipart upload of byte ranges, each with its checksum; a failed part is retried alone', async t => {
  const data = randomBytes(PART_BYTES * 2 + 1000)
  const dir = t.testdir()
  writeFileSync(join(dir, 'big.tar.gz'), data)
  const objects = new Map<string, Buffer>()
  const s3 = fakeS3(objects, [{ action: 'part', error: sdkError('SlowDown', 503) }])
  await store(s3.api).upload('stage/big', join(dir, 'big.tar.gz'), 'application/gzip')
  t.ok(objects.get('stage/big')?.equals(data), 'the object is the file, byte for byte')
  t.same(s3.calls.map(c => c.action), ['CreateMultipartUpload', 'UploadPart', 'UploadPart', 'UploadPart', 'UploadPart', 'CompleteMultipartUpload'], 'three parts, the first sent twice')
  t.match(s3.calls[0]?.input, { ChecksumAlgorithm: 'SHA256', ContentType: 'application/gzip' })
  t.same(s3.calls.filter(c => c.action === 'UploadPart').map(c => [c.input['PartNumber'], c.input['ContentLength']]), [[1, PART_BYTES], [1, PART_BYTES], [2, PART_BYTES], [3, 1000]])
  t.match((s3.calls[5]?.input['MultipartUpload'] as { Parts: unknown[] }).Parts, [{ PartNumber: 1, ETag: '"etag-1"' }, { PartNumber: 2 }, { PartNumber: 3 }])
})

t.test('upload, large, a part refused for good: the multipart upload is aborted, the error names the object', async t => {
  const dir = t.testdir()
  writeFileSync(join(dir, 'big.tar.gz'), randomBytes(PART_BYTES + 10))
  const objects = new Map<string, Buffer>()
  const s3 = fakeS3(objects, [{ action: 'part', error: sdkError('AccessDenied', 403), times: 10 }])
  const e = await rejected(() => store(s3.api).upload('stage/big', join(dir, 'big.tar.gz'), 'application/gzip'))
  t.match(e, { code: 'AWS_ACCESS_DENIED', message: /AWS s3:PutObject on s3:\/\/fleet\/stage\/big failed: AccessDenied/ })
  t.same(s3.calls.map(c => c.action), ['CreateMultipartUpload', 'UploadPart', 'AbortMultipartUpload'])
  t.notOk(objects.has('stage/big'))
})

t.test('putText: a conditional write answers "exists" when another writer was first; an unconditional one replaces', async t => {
  const objects = new Map<string, Buffer>()
  const s3 = fakeS3(objects)
  const s = store(s3.api)
  t.equal(await s.putText('stage/app/index/c/r.json', '{"v":1}', { ifAbsent: true }), 'written')
  t.equal(await s.putText('stage/app/index/c/r.json', '{"v":2}', { ifAbsent: true }), 'exists')
  t.equal(objects.get('stage/app/index/c/r.json')?.toString(), '{"v":1}', 'the first writer wins')
  t.equal(await s.putText('stage/app/index/c/r.json', '{"v":3}', { ifAbsent: false }), 'written')
  t.equal(objects.get('stage/app/index/c/r.json')?.toString(), '{"v":3}')
  t.match(s3.calls[0]?.input, { IfNoneMatch: '*', ContentType: 'application/json', ChecksumAlgorithm: 'SHA256' })
  t.notOk('IfNoneMatch' in (s3.calls[2]?.input ?? {}))
  const conflict = fakeS3(objects, [{ action: 'put', error: sdkError('ConditionalRequestConflict', 409) }])
  t.equal(await store(conflict.api).putText('stage/x.json', '{}', { ifAbsent: true }), 'exists', 'a concurrent conditional write: the other one wins')
})

t.test('path-style addressing whenever the SDK is pointed at an endpoint of ours', async t => {
  t.equal(usesCustomEndpoint({}), false, "AWS's own endpoints: virtual-hosted style")
  t.equal(usesCustomEndpoint({ AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:9000' }), true)
  t.equal(usesCustomEndpoint({ AWS_ENDPOINT_URL: 'http://127.0.0.1:5000' }), true)
  t.equal(usesCustomEndpoint({ AWS_ENDPOINT_URL: 'http://x', AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: 'true' }), false, 'the SDK ignores them then, so do we')
})
