/**
 * Test fixture: an IMDSv2-only instance metadata service on 127.0.0.1 and a free port.
 * `PUT /latest/api/token` (with a TTL header) hands out a token; every GET without a valid token
 * gets 401, and a GET without any token header is counted in `tokenlessRequests`: zero proves
 * the client never fell back to IMDSv1. `tags: 'disabled'` answers 404 on tags/instance, as EC2
 * does when instance metadata tags are turned off. `stallMs` delays every answer; `unreachable`
 * resets every connection unanswered (status 0 in `requests`).
 */
import { randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { closeLocal, listenLocal } from './local-http.js'

export interface ImdsState {
  instanceId: string
  region: string
  az: string
  tags: Record<string, string> | 'disabled'
  /** autoscaling/target-lifecycle-state; 404 when unset (not in an Auto Scaling group) */
  lifecycleState?: string
  /** spot/instance-action JSON; 404 when unset (no interruption scheduled) */
  spotAction?: { action: string; time: string }
  stallMs?: number
  /** every connection is reset without an answer, as when IMDS cannot be reached */
  unreachable?: boolean
}

export interface ImdsRequest {
  method: string
  path: string
  /** had an X-aws-ec2-metadata-token header (valid or not) */
  withToken: boolean
  status: number
}

export interface ImdsServer {
  endpoint: string
  /** changes the served state while running */
  set(patch: Partial<ImdsState>): void
  requests: ImdsRequest[]
  /** metadata requests that carried no token header at all: IMDSv1 attempts */
  readonly tokenlessRequests: number
  stop(): Promise<void>
}

const MAX_TTL_SECONDS = 21600

export const startImdsServer = async (initial: ImdsState): Promise<ImdsServer> => {
  const state: ImdsState = { ...initial }
  const tokens = new Map<string, number>() // token -> expiry (epoch ms)
  const requests: ImdsRequest[] = []
  let tokenless = 0
  const timers = new Set<NodeJS.Timeout>()

  /** The body for a meta-data path, or undefined for 404. */
  const metadata = (path: string): string | undefined => {
    const tagPrefix = 'tags/instance/'
    if (path === 'instance-id') return state.instanceId
    if (path === 'placement/region') return state.region
    if (path === 'placement/availability-zone') return state.az
    if (path === 'autoscaling/target-lifecycle-state') return state.lifecycleState
    if (path === 'spot/instance-action') return state.spotAction && JSON.stringify(state.spotAction)
    if (state.tags === 'disabled') return undefined
    if (path === 'tags/instance' || path === 'tags/instance/') return Object.keys(state.tags).join('\n')
    if (path.startsWith(tagPrefix)) {
      const key = decodeURIComponent(path.slice(tagPrefix.length))
      return Object.hasOwn(state.tags, key) ? state.tags[key] : undefined
    }
    return undefined // iam/security-credentials/ and the rest: this instance has no such data
  }

  const respond = (req: IncomingMessage, res: ServerResponse): number => {
    const send = (status: number, body: string, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'Content-Type': 'text/plain', ...headers })
      res.end(body)
      return status
    }
    // the SDK joins its endpoint's "/" with "/latest/...", so real IMDS must accept "//latest"
    const path = (req.url ?? '/').split('?')[0]?.replace(/^\/+/, '/') ?? '/'
    if (path === '/latest/api/token') {
      if (req.method !== 'PUT') return send(405, 'Method Not Allowed')
      const ttl = Number(req.headers['x-aws-ec2-metadata-token-ttl-seconds'])
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TTL_SECONDS) return send(400, 'Bad Request')
      const token = randomBytes(32).toString('base64url')
      tokens.set(token, Date.now() + ttl * 1000)
      return send(200, token, { 'X-aws-ec2-metadata-token-ttl-seconds': String(ttl) })
    }
    const header = req.headers['x-aws-ec2-metadata-token']
    if (header === undefined) tokenless += 1
    const expiry = typeof header === 'string' ? tokens.get(header) : undefined
    if (expiry === undefined || expiry < Date.now()) return send(401, 'Unauthorized')
    if (req.method !== 'GET') return send(405, 'Method Not Allowed')
    const prefix = '/latest/meta-data/'
    const body = path.startsWith(prefix) ? metadata(path.slice(prefix.length)) : undefined
    return body === undefined ? send(404, 'Not Found') : send(200, body)
  }

  const server = createServer((req, res) => {
    const entry: ImdsRequest = { method: req.method ?? '', path: req.url ?? '', withToken: req.headers['x-aws-ec2-metadata-token'] !== undefined, status: 0 }
    requests.push(entry)
    if (state.unreachable) return void req.socket.destroy()
    const answer = () => void (entry.status = respond(req, res))
    if (!state.stallMs) return answer()
    const timer = setTimeout(() => {
      timers.delete(timer)
      answer()
    }, state.stallMs)
    timers.add(timer)
  })
  const endpoint = await listenLocal(server)

  return {
    endpoint,
    set: (patch) => void Object.assign(state, patch),
    requests,
    get tokenlessRequests() {
      return tokenless
    },
    async stop() {
      for (const t of timers) clearTimeout(t)
      timers.clear()
      await closeLocal(server)
    },
  }
}
