/**
 * Test fixture: a real moto server (testing.md) on 127.0.0.1 and a free port, from the venv that
 * scripts/test-setup.mjs installs under .cache/. Its request recorder tells which AWS actions a
 * client called: the proof behind the IAM policy and the dry-run's read-only promise.
 */
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, REPO } from './sandbox.js'

export const MOTO_SERVER = join(REPO, '.cache/moto-venv/bin/moto_server')

export interface RecordedAction {
  /** the signing name from the SigV4 credential scope: secretsmanager, ssm, ec2, autoscaling, s3 */
  service: string
  /** the API action, e.g. GetSecretValue, DescribeTags */
  action: string
  /** the request body as sent (form or JSON) */
  body?: string
}

export interface Moto {
  endpoint: string
  port: number
  /** forgets every resource (POST /moto-api/reset); the recorder is left as it is */
  reset(): Promise<void>
  /** empties the recording, then records every AWS request until stopRecording() */
  startRecording(): Promise<void>
  stopRecording(): Promise<void>
  recordedActions(): Promise<RecordedAction[]>
  stop(): Promise<void>
}

/** One line of moto's recording (moto/moto_api/_internal/recorder/models.py). */
interface RecorderEntry {
  headers: Record<string, string>
  method: string
  url: string
  body: string | null
  body_encoded: boolean
}

const isEntry = (v: unknown): v is RecorderEntry =>
  typeof v === 'object' && v !== null && 'headers' in v && 'url' in v && 'body' in v && 'body_encoded' in v

const header = (headers: Record<string, string>, name: string): string | undefined =>
  Object.entries(headers).find(([k]) => k.toLowerCase() === name)?.[1]

/**
 * S3 is REST: the operation is the method on a path and a query. The SDK names it in `x-id`
 * (`?x-id=GetObject`) for most; the multipart calls are told apart by their query.
 */
const s3Operation = (method: string, url: URL): string | undefined => {
  const q = url.searchParams
  const named = q.get('x-id')
  if (named) return named
  if (method === 'POST' && q.has('uploads')) return 'CreateMultipartUpload'
  if (method === 'POST' && q.has('uploadId')) return 'CompleteMultipartUpload'
  if (method === 'DELETE' && q.has('uploadId')) return 'AbortMultipartUpload'
  if (method === 'PUT' && q.has('partNumber')) return 'UploadPart'
  const keyed = url.pathname.replace(/^\/+/, '').includes('/') && !url.pathname.endsWith('/')
  if (method === 'GET') return keyed ? 'GetObject' : 'ListObjects'
  if (method === 'HEAD') return keyed ? 'HeadObject' : 'HeadBucket'
  if (method === 'PUT') return keyed ? 'PutObject' : 'CreateBucket'
  if (method === 'DELETE') return keyed ? 'DeleteObject' : 'DeleteBucket'
  return undefined
}

/**
 * JSON protocols (Secrets Manager, SSM) name the action in `X-Amz-Target: AmazonSSM.GetParameter`;
 * query protocols (EC2, Auto Scaling) in the `Action=` form parameter of the body (or the URL);
 * S3 in its method, path and query (s3Operation).
 */
const toAction = (entry: RecorderEntry): RecordedAction | undefined => {
  const url = new URL(entry.url, 'http://moto')
  if (url.pathname.startsWith('/moto-api/')) return undefined
  const body = entry.body === null ? undefined : entry.body_encoded ? Buffer.from(entry.body, 'base64').toString('utf8') : entry.body
  const scope = /Credential=[^/]+\/\d{8}\/[^/]+\/([^/]+)\//.exec(header(entry.headers, 'authorization') ?? '')
  const target = header(entry.headers, 'x-amz-target')
  const service = scope?.[1] ?? 'unknown'
  const action = target
    ? target.slice(target.lastIndexOf('.') + 1)
    : service === 's3' ? s3Operation(entry.method, url) : (new URLSearchParams(body ?? '').get('Action') ?? url.searchParams.get('Action'))
  if (!action) return undefined
  // an S3 body is an object's bytes (an archive), not a request worth keeping
  return { service, action, ...(body === undefined || service === 's3' ? {} : { body }) }
}

const call = async (base: string, path: string, method: 'GET' | 'POST'): Promise<string> => {
  const res = await fetch(`${base}${path}`, { method })
  const text = await res.text()
  if (!res.ok) throw new Error(`moto ${method} ${path} answered ${res.status}: ${text.slice(0, 500)}`)
  return text
}

const READY_TIMEOUT_MS = 30_000

export const startMoto = async (): Promise<Moto> => {
  if (!existsSync(MOTO_SERVER)) {
    throw new Error(`moto server not found at ${MOTO_SERVER}: run npm test (scripts/test-setup.mjs installs moto)`)
  }
  const port = await freePort()
  const endpoint = `http://127.0.0.1:${port}`
  // the recorder appends to this file; one per server so parallel test files never mix
  const dir = mkdtempSync(join(tmpdir(), 'moto-'))
  const child = spawn(MOTO_SERVER, ['-H', '127.0.0.1', '-p', String(port)], {
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/root', MOTO_RECORDER_FILEPATH: join(dir, 'recording') },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  // moto logs every request; unread pipes would fill up and stall it. The tail explains a crash.
  let tail = ''
  const keep = (c: Buffer) => (tail = (tail + c.toString()).slice(-4000))
  child.stdout.on('data', keep)
  child.stderr.on('data', keep)
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  let alive = true
  void exited.then(() => (alive = false))

  const stop = async () => {
    if (alive) {
      child.kill('SIGTERM')
      const killer = setTimeout(() => child.kill('SIGKILL'), 3000)
      await exited
      clearTimeout(killer)
    }
    rmSync(dir, { recursive: true, force: true })
  }

  const deadline = Date.now() + READY_TIMEOUT_MS
  for (;;) {
    if (!alive) {
      await stop()
      throw new Error(`moto server exited before answering on ${endpoint}:\n${tail}`)
    }
    const up = await fetch(`${endpoint}/moto-api/`).then((r) => r.ok, () => false)
    if (up) break
    if (Date.now() > deadline) {
      await stop()
      throw new Error(`moto server did not answer on ${endpoint} within ${READY_TIMEOUT_MS} ms:\n${tail}`)
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  // download-recording fails until the file exists
  await call(endpoint, '/moto-api/recorder/reset-recording', 'POST')

  return {
    endpoint,
    port,
    reset: async () => void (await call(endpoint, '/moto-api/reset', 'POST')),
    async startRecording() {
      await call(endpoint, '/moto-api/recorder/reset-recording', 'POST')
      await call(endpoint, '/moto-api/recorder/start-recording', 'POST')
    },
    stopRecording: async () => void (await call(endpoint, '/moto-api/recorder/stop-recording', 'POST')),
    async recordedActions() {
      const text = await call(endpoint, '/moto-api/recorder/download-recording', 'GET')
      const actions: RecordedAction[] = []
      for (const line of text.split('\n')) {
        if (!line.trim()) continue
        const entry: unknown = JSON.parse(line)
        if (!isEntry(entry)) throw new Error(`unexpected moto recorder line: ${line.slice(0, 200)}`)
        const action = toAction(entry)
        if (action) actions.push(action)
      }
      return actions
    },
    stop,
  }
}
