/**
 * An IMDSv2 session for a long-running process (`watch`): one token, reused until shortly before
 * it expires, then renewed. Implements the same `Imds` seam as aws/identity.ts.
 *
 * Why not @aws-sdk/ec2-metadata-service here (as `run` uses): it fetches a new token for every
 * request, and after one timeout or 403/404/405 on the token PUT it stops fetching tokens for
 * good; with IMDSv1 disabled, every later request then fails. A one-shot run fails fast and
 * exits, which is right; a daemon polling every few seconds would be blind for the rest of the
 * instance's life after one hiccup. Here every failure is per request, and the caller backs off.
 *
 * IMDSv1 is impossible: no metadata request is ever sent without a token.
 */
import { request } from 'node:http'
import type { Imds } from './identity.js'
import { AgentError } from '../core/errors.js'

export interface ImdsSessionOptions {
  /** default: AWS_EC2_METADATA_SERVICE_ENDPOINT, else http://169.254.169.254 */
  endpoint?: string
  /** token lifetime asked for, in seconds (1-21600) */
  tokenTtlS?: number
  /** per HTTP request (2 s: IMDS answers in milliseconds on EC2) */
  timeoutMs?: number
  now?: () => number
}

export interface ImdsSession extends Imds {
  /** tokens fetched so far (for the log and tests) */
  readonly tokensFetched: number
}

const DEFAULT_ENDPOINT = 'http://169.254.169.254'

interface Answer {
  status: number
  body: string
}

const send = (url: URL, method: 'GET' | 'PUT', headers: Record<string, string>, timeoutMs: number): Promise<Answer> =>
  new Promise((resolve, reject) => {
    // agent: false: no keep-alive socket outlives the request (nothing holds the process open)
    const req = request(url, { method, headers, agent: false, timeout: timeoutMs }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)))
    req.on('error', reject)
    req.end()
  })

const failed = (endpoint: string, what: string, detail: string, cause?: unknown) =>
  new AgentError(`instance metadata (IMDSv2) at ${endpoint}: ${what} failed: ${detail}`, {
    code: 'IMDS_ERROR',
    remedy: 'the watch retries with backoff; if it persists, check the instance metadata options (HttpEndpoint=enabled, HttpTokens=required, hop limit 2 in a container)',
    retryable: true,
    cause,
  })

export const createImdsSession = (opts: ImdsSessionOptions = {}): ImdsSession => {
  const endpoint = opts.endpoint ?? process.env['AWS_EC2_METADATA_SERVICE_ENDPOINT'] ?? DEFAULT_ENDPOINT
  const ttlS = opts.tokenTtlS ?? 21600
  const timeoutMs = opts.timeoutMs ?? 2_000
  const now = opts.now ?? Date.now
  // renewed with a quarter of its lifetime (at most 5 min) left, so a request never carries a
  // token that expires on its way; a 1 s token is renewed after 750 ms
  const marginMs = Math.min(300_000, (ttlS * 1000) / 4)
  let token: { value: string; renewAt: number } | undefined
  let fetched = 0

  const call = async (method: 'GET' | 'PUT', path: string, headers: Record<string, string>): Promise<Answer> => {
    try {
      return await send(new URL(path, endpoint.replace(/\/*$/, '/')), method, headers, timeoutMs)
    } catch (e) {
      throw failed(endpoint, `${method} /${path}`, e instanceof Error ? e.message : String(e), e)
    }
  }

  const currentToken = async (): Promise<string> => {
    if (token && now() < token.renewAt) return token.value
    const r = await call('PUT', 'latest/api/token', { 'X-aws-ec2-metadata-token-ttl-seconds': String(ttlS) })
    if (r.status !== 200 || r.body === '') throw failed(endpoint, 'PUT /latest/api/token', `HTTP ${r.status}`)
    fetched += 1
    token = { value: r.body, renewAt: now() + ttlS * 1000 - marginMs }
    return token.value
  }

  return {
    endpoint,
    get tokensFetched() {
      return fetched
    },
    async get(path) {
      for (let attempt = 0; ; attempt++) {
        const r = await call('GET', `latest/meta-data/${path}`, { 'X-aws-ec2-metadata-token': await currentToken() })
        if (r.status === 200) return r.body
        if (r.status === 404) return undefined
        // 401: the token is no longer valid (IMDS restarted, clock jump): one new token, once
        if (r.status === 401 && attempt === 0) {
          token = undefined
          continue
        }
        throw failed(endpoint, `GET /latest/meta-data/${path}`, `HTTP ${r.status}`)
      }
    },
  }
}
