/**
 * Test fixture: a fault-injecting HTTP proxy on 127.0.0.1 and a free port, in front of one real
 * server (moto, the lifecycle proxy, the IMDS server, git http-backend, an npm tarball server).
 * Every dependency of the agent speaks HTTP, so one small proxy covers them all.
 *
 * Faults are rules taken in order: `fail(fault, count, match)` gives the next `count` requests
 * that `match` the fault, then requests pass again (so "N errors, then recovery" is one call,
 * and several calls make a sequence: a stall, then a 503, then the real answer). `refuse()`
 * closes the listening socket (connection refused) until `accept()`. Nothing is retried or
 * rewritten here: a request either gets its fault or goes to the server unchanged, streamed.
 */
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

export type Fault =
  /** the connection is closed before any answer (ECONNRESET / socket hang up) */
  | { kind: 'reset' }
  /** the request is read and never answered, until the client gives up (or `clear()`) */
  | { kind: 'stall' }
  /** forwarded after `ms`: slow, but it answers */
  | { kind: 'delay'; ms: number }
  /** answered here with this status (and body, headers): never reaches the server */
  | { kind: 'status'; status: number; body?: string; headers?: Record<string, string> }

export interface ProxiedRequest {
  method: string
  path: string
  headers: Record<string, string | string[] | undefined>
  /** the fault it got: 'pass', 'reset', 'stall', 'delay', or the status code */
  fault: string
}

export interface FaultProxy {
  endpoint: string
  port: number
  /** the proxy's URL for `path` (e.g. `app.git`) */
  url(path: string): string
  /** the next `count` requests for which `match` holds get `fault` (default: every request) */
  fail(fault: Fault, count?: number, match?: (r: ProxiedRequest) => boolean): void
  /** stop listening: connections are refused until accept() */
  refuse(): Promise<void>
  accept(): Promise<void>
  /** every request received since the start or the last clear(), in order */
  requests: ProxiedRequest[]
  /** how many requests got a fault */
  faulted(): number
  /** forget the rules and the requests, close stalled requests, listen again if refused */
  clear(): Promise<void>
  stop(): Promise<void>
}

interface Rule {
  fault: Fault
  left: number
  match: (r: ProxiedRequest) => boolean
}

const faultName = (f: Fault): string => (f.kind === 'status' ? String(f.status) : f.kind)

export const startFaultProxy = async (target: string): Promise<FaultProxy> => {
  const to = new URL(target)
  const rules: Rule[] = []
  const requests: ProxiedRequest[] = []
  const stalled = new Set<ServerResponse>()
  const timers = new Set<NodeJS.Timeout>()
  const sockets = new Set<Socket>()

  const forward = (req: IncomingMessage, res: ServerResponse) => {
    const upstream = request({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers }, up => {
      res.writeHead(up.statusCode ?? 502, up.headers)
      up.pipe(res)
    })
    upstream.on('error', err => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' })
      res.end(`fault-proxy: ${target} unreachable: ${err.message}`)
    })
    req.pipe(upstream)
  }

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const r: ProxiedRequest = { method: req.method ?? '', path: req.url ?? '', headers: { ...req.headers }, fault: 'pass' }
    requests.push(r)
    const rule = rules.find(x => x.left > 0 && x.match(r))
    if (!rule) return forward(req, res)
    rule.left -= 1
    const f = rule.fault
    r.fault = faultName(f)
    switch (f.kind) {
      case 'reset':
        req.socket.destroy()
        return
      case 'stall':
        // the body is read (so the client is not blocked on sending), the answer never comes
        req.resume()
        stalled.add(res)
        res.on('close', () => stalled.delete(res))
        return
      case 'delay': {
        // buffer the body meanwhile: piping it later would lose what already arrived
        req.pause()
        const timer = setTimeout(() => {
          timers.delete(timer)
          forward(req, res)
        }, f.ms)
        timers.add(timer)
        return
      }
      case 'status':
        req.resume()
        res.writeHead(f.status, { 'content-type': 'text/plain', ...f.headers })
        res.end(f.body ?? `fault-proxy: injected ${f.status}\n`)
    }
  }

  const server = createServer(handle)
  server.on('connection', s => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject)
        resolve()
      })
    })
  await listen(0)
  const { port } = server.address() as AddressInfo
  const close = async () => {
    if (!server.listening) return
    for (const s of sockets) s.destroy()
    await new Promise<void>(resolve => server.close(() => resolve()))
  }

  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    url: path => `http://127.0.0.1:${port}/${path.replace(/^\/+/, '')}`,
    fail(fault, count = Number.POSITIVE_INFINITY, match = () => true) {
      rules.push({ fault, left: count, match })
    },
    refuse: close,
    async accept() {
      if (!server.listening) await listen(port)
    },
    requests,
    faulted: () => requests.filter(r => r.fault !== 'pass').length,
    async clear() {
      rules.length = 0
      requests.length = 0
      for (const t of timers) clearTimeout(t)
      timers.clear()
      for (const res of stalled) res.destroy()
      stalled.clear()
      if (!server.listening) await listen(port)
    },
    async stop() {
      rules.length = 0
      for (const t of timers) clearTimeout(t)
      for (const res of stalled) res.destroy()
      await close()
    },
  }
}
