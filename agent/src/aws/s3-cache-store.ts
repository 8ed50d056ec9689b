/**
 * CacheStore (releases/cache-store.ts) on S3: the only user of @aws-sdk/client-s3, loaded
 * (aws/seams.ts imports this file lazily) only when a release cache is configured. Endpoints follow the SDK's own conventions like every other client
 * (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL); with one of them set the bucket is addressed
 * path-style (`<endpoint>/<bucket>/<key>`), which S3-compatible stores and emulators expect and
 * which needs no DNS name per bucket. A bucket in another region is followed (the SDK's region
 * redirect). Each call goes through the agent's retry policy (aws/retry.ts) within
 * `--aws-timeout`; an attempt gives up after 15 s without a byte (sdkClientConfig), so a large
 * transfer may take longer than the budget as long as it moves.
 *
 * Uploads stream from the file: a small archive in one PutObject, a large one as a multipart
 * upload whose parts are byte ranges of the file, each with its SHA-256 computed beforehand (S3
 * checks it, and the SDK need not buffer the part to compute one). Not @aws-sdk/lib-storage's
 * Upload, although it is the SDK's own helper for this: it assembles every part in memory (a
 * Buffer.concat of 5 MiB kept alive by the remainder view, and the SDK's copies for checksums),
 * measured at 15-45 MB of buffers in flight, the agent at 100-150 MB of RSS uploading a 110 MB
 * archive (bench/README.md, "Release cache"); parts streamed from the file keep it flat.
 */
import { createReadStream, createWriteStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import {
  AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateMultipartUploadCommand, GetObjectCommand, PutObjectCommand, S3Client, UploadPartCommand,
  type AbortMultipartUploadCommandInput, type CompleteMultipartUploadCommandInput, type CreateMultipartUploadCommandInput, type GetObjectCommandInput,
  type PutObjectCommandInput, type UploadPartCommandInput,
} from '@aws-sdk/client-s3'
import { AgentError } from '../core/errors.js'
import { sha256File } from '../core/file-hash.js'
import { collectingEvery, releaseMemory } from '../core/gc.js'
import type { Logger } from '../core/logger.js'
import type { CacheStore } from '../releases/cache-store.js'
import { classifyAwsError, sdkClientConfig, withRetry, type AwsCall, type RetryOptions } from './retry.js'

/** The subset of S3 we call, so the unit test can stand in for S3 without mocking the SDK. */
export interface S3Api {
  getObject(input: GetObjectCommandInput): Promise<{ Body?: Readable | undefined; ContentLength?: number | undefined }>
  putObject(input: PutObjectCommandInput): Promise<unknown>
  createMultipartUpload(input: CreateMultipartUploadCommandInput): Promise<{ UploadId?: string | undefined }>
  uploadPart(input: UploadPartCommandInput): Promise<{ ETag?: string | undefined; ChecksumSHA256?: string | undefined }>
  completeMultipartUpload(input: CompleteMultipartUploadCommandInput): Promise<unknown>
  abortMultipartUpload(input: AbortMultipartUploadCommandInput): Promise<unknown>
}

/** Archives up to this size go in one PutObject; larger ones in parts of this size (S3 allows
 * 5 MiB to 5 GiB, at most 10,000 parts: 80 GiB, ten times ARCHIVE_MAX_BYTES). Parts stream from
 * the file, so the size costs no memory; it bounds what one failed attempt sends again. */
export const PART_BYTES = 8 * 1024 * 1024
/** a minor collection every 4 MB transferred (core/gc.ts): a 110 MB download grew the RSS by
 * 42 MB without, 20 MB with (16 MB apart: no better than none) */
const COLLECT_BYTES = 4 * 1024 * 1024

/** Whether the SDK will use an endpoint of ours rather than AWS's: then addressing is path-style. */
export const usesCustomEndpoint = (env: NodeJS.ProcessEnv): boolean =>
  env['AWS_IGNORE_CONFIGURED_ENDPOINT_URLS'] !== 'true' && Boolean(env['AWS_ENDPOINT_URL_S3'] || env['AWS_ENDPOINT_URL'])

export const createS3Api = (o: { region: string; budgetMs: number; pathStyle: boolean }): S3Api => {
  const client = new S3Client({ ...sdkClientConfig(o.region, o.budgetMs), forcePathStyle: o.pathStyle, followRegionRedirects: true })
  return {
    async getObject(input) {
      const r = await client.send(new GetObjectCommand(input))
      return { Body: r.Body instanceof Readable ? r.Body : undefined, ContentLength: r.ContentLength }
    },
    putObject: input => client.send(new PutObjectCommand(input)),
    createMultipartUpload: input => client.send(new CreateMultipartUploadCommand(input)),
    uploadPart: input => client.send(new UploadPartCommand(input)),
    completeMultipartUpload: input => client.send(new CompleteMultipartUploadCommand(input)),
    abortMultipartUpload: input => client.send(new AbortMultipartUploadCommand(input)),
  }
}

export interface S3CacheStoreOptions {
  bucket: string
  /** prefix of the cache (no slashes at either end), for `location` */
  prefix: string
  region: string
  env: NodeJS.ProcessEnv
  log?: Logger
  retry?: RetryOptions
  /** stands in for S3 (unit tests) */
  api?: S3Api
}

const readCapped = async (body: Readable, maxBytes: number, what: string): Promise<string> => {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array)
    size += b.length
    if (size > maxBytes) {
      body.destroy()
      throw new AgentError(`${what} is larger than ${maxBytes} bytes: not a release cache document`, {
        code: 'CACHE_DOCUMENT_INVALID',
        remedy: `remove ${what}; the next deploy from source publishes it again`,
      })
    }
    chunks.push(b)
  }
  return Buffer.concat(chunks).toString('utf8')
}

export const createS3CacheStore = (o: S3CacheStoreOptions): CacheStore => {
  let api = o.api
  const s3 = () => (api ??= createS3Api({ region: o.region, budgetMs: o.retry?.totalMs ?? 60_000, pathStyle: usesCustomEndpoint(o.env) }))
  const url = (key: string) => `s3://${o.bucket}/${key}`
  const retry = <T>(call: AwsCall, fn: () => Promise<T>) =>
    withRetry(call, fn, {
      ...o.retry,
      onRetry: i => {
        o.log?.warn({ aws: `s3:${call.action}`, resource: call.resource, ...i }, `AWS ${call.action} failed (${i.code}); retrying`)
        o.retry?.onRetry?.(i)
      },
    })

  return {
    location: `s3://${o.bucket}${o.prefix ? `/${o.prefix}` : ''}`,
    url,

    getText(key, maxBytes) {
      return retry({ service: 's3', action: 'GetObject', resource: url(key) }, async () => {
        try {
          const r = await s3().getObject({ Bucket: o.bucket, Key: key, ChecksumMode: 'ENABLED' })
          return r.Body ? await readCapped(r.Body, maxBytes, url(key)) : ''
        } catch (e) {
          // only a missing key is "no entry": a missing bucket is a configuration to fix, said loudly
          if (classifyAwsError(e).code === 'NoSuchKey') return undefined
          throw e
        }
      })
    },

    download(key, file, expectBytes) {
      return retry({ service: 's3', action: 'GetObject', resource: url(key) }, async () => {
        const r = await s3().getObject({ Bucket: o.bucket, Key: key })
        if (!r.Body) throw sizeMismatch(url(key), 0, expectBytes)
        if (r.ContentLength !== undefined && r.ContentLength !== expectBytes) {
          r.Body.destroy()
          throw sizeMismatch(url(key), r.ContentLength, expectBytes)
        }
        releaseMemory()
        await pipeline(r.Body, collectingEvery(COLLECT_BYTES), createWriteStream(file, { mode: 0o600 }))
        const got = (await stat(file)).size
        if (got !== expectBytes) throw sizeMismatch(url(key), got, expectBytes)
      })
    },

    async upload(key, file, contentType) {
      const size = (await stat(file)).size
      const range = (start: number, end: number) => ({
        Body: createReadStream(file, { start, end: end - 1 }).pipe(collectingEvery(COLLECT_BYTES)),
        ContentLength: end - start,
      })
      releaseMemory()
      if (size <= PART_BYTES) {
        const ChecksumSHA256 = await sha256File(file, 'base64')
        await retry({ service: 's3', action: 'PutObject', resource: url(key) }, () =>
          s3().putObject({ Bucket: o.bucket, Key: key, ContentType: contentType, ChecksumSHA256, ...range(0, size) }))
        return
      }
      const call: AwsCall = { service: 's3', action: 'PutObject', resource: url(key) }
      const created = await retry(call, () => s3().createMultipartUpload({ Bucket: o.bucket, Key: key, ContentType: contentType, ChecksumAlgorithm: 'SHA256' }))
      const UploadId = created.UploadId ?? ''
      try {
        const Parts: { PartNumber: number; ETag: string; ChecksumSHA256: string }[] = []
        for (let PartNumber = 1, start = 0; start < size; PartNumber++, start += PART_BYTES) {
          const end = Math.min(size, start + PART_BYTES)
          const ChecksumSHA256 = await sha256File(file, 'base64', { start, end })
          // each part is retried on its own: a failure halfway does not send the archive again
          const part = await retry(call, () =>
            s3().uploadPart({ Bucket: o.bucket, Key: key, UploadId, PartNumber, ChecksumSHA256, ...range(start, end) }))
          Parts.push({ PartNumber, ETag: part.ETag ?? '', ChecksumSHA256 })
        }
        await retry(call, () => s3().completeMultipartUpload({ Bucket: o.bucket, Key: key, UploadId, MultipartUpload: { Parts } }))
      } catch (e) {
        // parts left behind cost storage until the lifecycle rule's AbortIncompleteMultipartUpload
        await retry({ service: 's3', action: 'AbortMultipartUpload', resource: url(key) }, () =>
          s3().abortMultipartUpload({ Bucket: o.bucket, Key: key, UploadId })).catch(() => undefined)
        throw e
      }
    },

    putText(key, text, { ifAbsent }) {
      return retry({ service: 's3', action: 'PutObject', resource: url(key) }, async () => {
        try {
          await s3().putObject({
            Bucket: o.bucket, Key: key, Body: text, ContentType: 'application/json', ChecksumAlgorithm: 'SHA256',
            ...(ifAbsent ? { IfNoneMatch: '*' } : {}),
          })
          return 'written' as const
        } catch (e) {
          // 412: another writer's object is there; 409: another conditional write of the same key
          // is in flight (S3 says retry; it will find that object)
          const code = classifyAwsError(e).code
          if (ifAbsent && (code === 'PreconditionFailed' || code === 'ConditionalRequestConflict')) return 'exists' as const
          throw e
        }
      })
    },
  }
}

/** Not retried: the object is what it is. Truncated or replaced, it is never extracted. */
const sizeMismatch = (what: string, got: number, expected: number): AgentError =>
  new AgentError(`${what} is ${got} bytes, its index entry says ${expected}: truncated or replaced`, {
    code: 'CACHE_ARCHIVE_SIZE',
    remedy: `nothing to do: the release is deployed from source and published again; remove ${what} if it persists`,
  })
