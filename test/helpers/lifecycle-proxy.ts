/**
 * Test fixture: moto answers CompleteLifecycleAction and RecordLifecycleActionHeartbeat with
 * HTTP 500, so this proxy on 127.0.0.1 and a free port answers those two itself, the way Auto
 * Scaling does, and forwards every other request to moto unchanged. It knows which
 * (instance, hook) pairs have an active lifecycle action; a completion ends the action.
 * `failNext` makes the next calls of an action fail (e.g. Throttling) to exercise retries.
 * DescribeAutoScalingInstances shows an instance with an active action in Pending:Wait, as AWS does.
 */
import { randomUUID } from 'node:crypto'
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http'
import { closeLocal, listenLocal, readBody } from './local-http.js'

const NS = 'http://autoscaling.amazonaws.com/doc/2011-01-01/'

export interface LifecycleCall {
  action: 'CompleteLifecycleAction' | 'RecordLifecycleActionHeartbeat'
  instanceId?: string
  hookName?: string
  asgName?: string
  /** LifecycleActionResult: CONTINUE or ABANDON (completions only) */
  result?: string
  token?: string
  /** the HTTP status the proxy answered with */
  status: number
}

export interface ActivePair {
  instanceId: string
  hookName: string
  /** the LifecycleActionToken, for callers that complete by token instead of instance ID */
  token?: string
  /** the LifecycleState DescribeAutoScalingInstances reports while the action is active
   * (default Pending:Wait; Warmed:Pending:Wait for an instance launched into a warm pool;
   * Terminating:Wait for a terminating hook, which `watch` completes) */
  state?: string
}

export interface LifecycleProxy {
  endpoint: string
  /** replaces the set of instance/hook pairs that have an active lifecycle action */
  setActive(pairs: ActivePair[]): void
  /** every lifecycle call received, in order, accepted or not */
  calls: LifecycleCall[]
  /** the accepted completions */
  completions(): LifecycleCall[]
  /** the accepted heartbeats */
  heartbeats(): LifecycleCall[]
  /** the next `count` requests for `action` (any action, answered or forwarded) fail this way */
  failNext(action: string, status: number, code: string, count: number, message?: string): void
  stop(): Promise<void>
}

const xmlEscape = (s: string): string =>
  s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c] ?? c)

const sendXml = (res: ServerResponse, status: number, xml: string) => {
  res.writeHead(status, { 'Content-Type': 'text/xml', 'x-amzn-RequestId': randomUUID() })
  res.end(xml)
}

/** The query-protocol (Auto Scaling, EC2-style) error document. */
const queryError = (res: ServerResponse, status: number, code: string, message: string) =>
  sendXml(res, status, `<ErrorResponse xmlns="${NS}"><Error><Type>Sender</Type><Code>${xmlEscape(code)}</Code><Message>${xmlEscape(message)}</Message></Error><RequestId>${randomUUID()}</RequestId></ErrorResponse>`)

/** The JSON-protocol (Secrets Manager, SSM) error document. */
const jsonError = (res: ServerResponse, status: number, code: string, message: string) => {
  res.writeHead(status, { 'Content-Type': 'application/x-amz-json-1.1', 'x-amzn-RequestId': randomUUID() })
  res.end(JSON.stringify({ __type: code, message }))
}

const forward = (moto: URL, req: IncomingMessage, body: Buffer, res: ServerResponse) => {
  const upstream = request(
    { host: moto.hostname, port: moto.port, method: req.method, path: req.url, headers: req.headers },
    (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers)
      up.pipe(res)
    },
  )
  upstream.on('error', (err) => {
    if (!res.headersSent) res.writeHead(502, { 'Content-Type': 'text/plain' })
    res.end(`lifecycle-proxy: moto unreachable: ${err.message}`)
  })
  upstream.end(body)
}

/** Forwards and rewrites moto's answer body (small XML documents only). */
const forwardRewriting = (moto: URL, req: IncomingMessage, body: Buffer, res: ServerResponse, rewrite: (xml: string) => string) => {
  const upstream = request({ host: moto.hostname, port: moto.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
    const chunks: Buffer[] = []
    up.on('data', (c: Buffer) => chunks.push(c))
    up.on('end', () => {
      const out = Buffer.from(rewrite(Buffer.concat(chunks).toString('utf8')))
      const headers = { ...up.headers, 'content-length': String(out.length) }
      res.writeHead(up.statusCode ?? 502, headers)
      res.end(out)
    })
  })
  upstream.on('error', (err) => {
    if (!res.headersSent) res.writeHead(502, { 'Content-Type': 'text/plain' })
    res.end(`lifecycle-proxy: moto unreachable: ${err.message}`)
  })
  upstream.end(body)
}

type Failure = { status: number; code: string; message: string; left: number }

export const startLifecycleProxy = async (motoEndpoint: string): Promise<LifecycleProxy> => {
  const moto = new URL(motoEndpoint)
  let active: ActivePair[] = []
  const calls: LifecycleCall[] = []
  const failures = new Map<string, Failure>()

  /** The next injected failure for `action`, if any is left. */
  const takeFailure = (action: string): Failure | undefined => {
    const f = failures.get(action)
    if (!f || f.left <= 0) return undefined
    f.left -= 1
    return f
  }

  const answerLifecycle = (action: LifecycleCall['action'], form: URLSearchParams, res: ServerResponse) => {
    const param = (name: string) => form.get(name) ?? undefined
    const call: LifecycleCall = {
      action,
      instanceId: param('InstanceId'),
      hookName: param('LifecycleHookName'),
      asgName: param('AutoScalingGroupName'),
      result: param('LifecycleActionResult'),
      token: param('LifecycleActionToken'),
      status: 200,
    }
    calls.push(call)
    const failure = takeFailure(action)
    if (failure) {
      call.status = failure.status
      return queryError(res, failure.status, failure.code, failure.message)
    }
    // Auto Scaling finds the action by instance ID when given one, else by token
    const at = active.findIndex((p) =>
      p.hookName === call.hookName && (call.instanceId === undefined ? p.token !== undefined && p.token === call.token : p.instanceId === call.instanceId))
    if (at < 0) {
      call.status = 400
      const by = call.instanceId === undefined ? `token ${call.token ?? ''}` : `instance ID ${call.instanceId}`
      return queryError(res, 400, 'ValidationError', `No active Lifecycle Action found with ${by}`)
    }
    if (action === 'CompleteLifecycleAction') active.splice(at, 1)
    sendXml(res, 200, `<${action}Response xmlns="${NS}"><${action}Result/><ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata></${action}Response>`)
  }

  const handle = (req: IncomingMessage, body: Buffer, res: ServerResponse) => {
    const amzTarget = req.headers['x-amz-target']
    if (typeof amzTarget === 'string') {
      // JSON protocol (Secrets Manager, SSM): the action is the part after the dot
      const failure = takeFailure(amzTarget.slice(amzTarget.lastIndexOf('.') + 1))
      if (failure) return jsonError(res, failure.status, failure.code, failure.message)
      return forward(moto, req, body, res)
    }
    const form = new URLSearchParams(body.toString('utf8'))
    const action = form.get('Action') ?? ''
    if (action === 'CompleteLifecycleAction' || action === 'RecordLifecycleActionHeartbeat') return answerLifecycle(action, form, res)
    const failure = takeFailure(action)
    if (failure) return queryError(res, failure.status, failure.code, failure.message)
    if (action === 'DescribeAutoScalingInstances' && active.length > 0) {
      // moto puts every group member InService at once; on AWS an instance with an active
      // launching action is in Pending:Wait until the action is completed
      return forwardRewriting(moto, req, body, res, (xml) => xml.replace(/<member>[^]*?<\/member>/g, (m) => {
        const pair = active.find((p) => m.includes(`<InstanceId>${p.instanceId}</InstanceId>`))
        return pair ? m.replace(/<LifecycleState>[^<]*<\/LifecycleState>/, `<LifecycleState>${xmlEscape(pair.state ?? 'Pending:Wait')}</LifecycleState>`) : m
      }))
    }
    forward(moto, req, body, res)
  }

  const server = createServer((req, res) => {
    readBody(req).then((body) => handle(req, body, res), () => res.destroy())
  })
  const endpoint = await listenLocal(server)

  return {
    endpoint,
    setActive: (pairs) => void (active = pairs.map((p) => ({ ...p }))),
    calls,
    completions: () => calls.filter((c) => c.action === 'CompleteLifecycleAction' && c.status === 200),
    heartbeats: () => calls.filter((c) => c.action === 'RecordLifecycleActionHeartbeat' && c.status === 200),
    failNext: (action, status, code, count, message = 'Rate exceeded') => void failures.set(action, { status, code, message, left: count }),
    stop: () => closeLocal(server),
  }
}
