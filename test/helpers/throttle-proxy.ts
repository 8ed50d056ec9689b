/**
 * Test fixture: an HTTP proxy on 127.0.0.1 and a free port that rate-limits AWS API calls the way
 * AWS does, in front of one real server (moto, or the lifecycle proxy in front of moto). Each
 * bucket is a token bucket (capacity `burst`, refilled at `perSecond`) shared by the actions it
 * lists, keyed `service:Action` with the SigV4 signing name (ssm, secretsmanager, autoscaling,
 * ec2). A request that finds its bucket empty never reaches the server: it gets the error document
 * AWS sends for throttling in that protocol, so the SDK parses it exactly as it would AWS's:
 *
 * - JSON protocols (SSM, Secrets Manager): HTTP 400, `x-amzn-ErrorType: ThrottlingException:…` and
 *   `{"__type":"com.amazon.coral.availability#ThrottlingException","message":"Rate exceeded"}`;
 * - Query protocol (Auto Scaling): HTTP 400, `<ErrorResponse>…<Code>Throttling</Code>`;
 * - EC2 protocol: HTTP 503, `<Response><Errors><Error><Code>RequestLimitExceeded</Code>`.
 *
 * A throttled request takes no token (AWS's buckets count accepted requests). Actions in no
 * bucket pass unthrottled. Counts per action: passed and throttled.
 */
import { randomUUID } from 'node:crypto'
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http'
import { closeLocal, listenLocal, readBody } from './local-http.js'

export interface BucketSpec {
  /** `service:Action` names sharing this bucket, e.g. ['ssm:GetParameter', 'ssm:GetParametersByPath'] */
  actions: string[]
  /** tokens added per second */
  perSecond: number
  /** capacity: how many requests a full bucket lets through at once */
  burst: number
}

export interface ActionCount {
  passed: number
  throttled: number
}

export interface ThrottleProxy {
  endpoint: string
  /** per `service:Action`, since the start or the last reset() */
  counts(): Record<string, ActionCount>
  /** throttled responses in total */
  throttled(): number
  /** refills every bucket and zeroes the counts */
  reset(): void
  stop(): Promise<void>
}

interface Bucket {
  spec: BucketSpec
  tokens: number
  /** performance.now() of the last refill */
  at: number
}

const AUTOSCALING_NS = 'http://autoscaling.amazonaws.com/doc/2011-01-01/'

/** The SigV4 signing name from the credential scope: `Credential=AKID/20250101/us-east-1/ssm/aws4_request`. */
const signingName = (req: IncomingMessage): string =>
  /Credential=[^/]+\/\d{8}\/[^/]+\/([^/]+)\//.exec(req.headers['authorization'] ?? '')?.[1] ?? 'unknown'

/** JSON protocols name the action in X-Amz-Target (`AmazonSSM.GetParameter`); query protocols in `Action=`. */
const actionOf = (req: IncomingMessage, body: Buffer): { protocol: 'json' | 'query'; action: string } => {
  const target = req.headers['x-amz-target']
  if (typeof target === 'string') return { protocol: 'json', action: target.slice(target.lastIndexOf('.') + 1) }
  const action = new URLSearchParams(body.toString('utf8')).get('Action') ?? new URL(req.url ?? '/', 'http://x').searchParams.get('Action') ?? 'unknown'
  return { protocol: 'query', action }
}

/** The answer AWS gives an over-rate request, per protocol (and EC2's own flavour of query). */
const throttle = (res: ServerResponse, protocol: 'json' | 'query', service: string) => {
  const requestId = randomUUID()
  if (protocol === 'json') {
    res.writeHead(400, {
      'content-type': 'application/x-amz-json-1.1',
      'x-amzn-requestid': requestId,
      'x-amzn-errortype': 'ThrottlingException:http://internal.amazon.com/coral/com.amazon.coral.availability/',
    })
    res.end(JSON.stringify({ __type: 'com.amazon.coral.availability#ThrottlingException', message: 'Rate exceeded' }))
  } else if (service === 'ec2') {
    res.writeHead(503, { 'content-type': 'text/xml;charset=UTF-8' })
    res.end(`<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>${requestId}</RequestID></Response>`)
  } else {
    res.writeHead(400, { 'content-type': 'text/xml', 'x-amzn-requestid': requestId })
    res.end(`<ErrorResponse xmlns="${AUTOSCALING_NS}"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>${requestId}</RequestId></ErrorResponse>`)
  }
}

export const startThrottleProxy = async (target: string, specs: readonly BucketSpec[]): Promise<ThrottleProxy> => {
  const to = new URL(target)
  const buckets: Bucket[] = specs.map(spec => ({ spec, tokens: spec.burst, at: performance.now() }))
  const byAction = new Map<string, Bucket>()
  for (const b of buckets) {
    for (const a of b.spec.actions) {
      if (byAction.has(a)) throw new Error(`throttle-proxy: ${a} is in two buckets; an action draws from one bucket`)
      byAction.set(a, b)
    }
  }
  let counts = new Map<string, ActionCount>()
  const count = (key: string) => {
    let c = counts.get(key)
    if (!c) counts.set(key, (c = { passed: 0, throttled: 0 }))
    return c
  }

  /** Takes a token when there is one. */
  const take = (b: Bucket): boolean => {
    const now = performance.now()
    b.tokens = Math.min(b.spec.burst, b.tokens + ((now - b.at) / 1000) * b.spec.perSecond)
    b.at = now
    if (b.tokens < 1) return false
    b.tokens -= 1
    return true
  }

  const forward = (req: IncomingMessage, body: Buffer, res: ServerResponse) => {
    const upstream = request({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers }, up => {
      res.writeHead(up.statusCode ?? 502, up.headers)
      up.pipe(res)
    })
    upstream.on('error', err => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' })
      res.end(`throttle-proxy: ${target} unreachable: ${err.message}`)
    })
    upstream.end(body)
  }

  const handle = (req: IncomingMessage, body: Buffer, res: ServerResponse) => {
    const service = signingName(req)
    const { protocol, action } = actionOf(req, body)
    const key = `${service}:${action}`
    const bucket = byAction.get(key)
    if (bucket && !take(bucket)) {
      count(key).throttled += 1
      return throttle(res, protocol, service)
    }
    count(key).passed += 1
    forward(req, body, res)
  }

  const server = createServer((req, res) => {
    readBody(req).then(body => handle(req, body, res), () => res.destroy())
  })
  const endpoint = await listenLocal(server)

  return {
    endpoint,
    counts: () => Object.fromEntries([...counts].map(([k, v]) => [k, { ...v }])),
    throttled: () => [...counts.values()].reduce((n, c) => n + c.throttled, 0),
    reset() {
      counts = new Map()
      for (const b of buckets) {
        b.tokens = b.spec.burst
        b.at = performance.now()
      }
    },
    stop: () => closeLocal(server),
  }
}
