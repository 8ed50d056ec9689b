import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { symlinkSync } from 'node:fs'
import { join } from 'node:path'
import { probeTimeoutMs, serviceLogs, waitHealthy } from '../../../agent/src/run/health.js'
import type { Pm2, Pm2Process } from '../../../agent/src/pm2/cli.js'

/** PM2 reporting one online instance of "app"; only list() is used by the health gate. */
const onlinePm2 = (): Pm2 => {
  const proc: Pm2Process = { name: 'app', pmId: 0, pid: process.pid, status: 'online', restarts: 0, uptimeSince: Date.now() }
  const unused = async () => {
    throw new Error('the health gate only lists')
  }
  return { list: async () => [proc], start: unused, reload: unused, delete: unused, ensureDaemon: unused, stop: unused, save: unused, kill: unused }
}

/** A real HTTP server answering /health after `delayMs`. */
const slowServer = async (t: Test, delayMs: number, status = 200): Promise<string> => {
  const server: Server = createServer((_req, res) => {
    setTimeout(() => res.writeHead(status).end('ok'), delayMs)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => {
    server.closeAllConnections()
    server.close(() => resolve())
  }))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/health`
}

const input = (url: string, timeoutMs: number) => ({
  app: 'app', health: { kind: 'http' as const, url, expectStatus: 200 }, timeoutMs, stableMs: 0,
  pm2: onlinePm2(), logs: { dir: '/nonexistent', files: [], owner: 0 }, scrub: (s: string) => s, pollMs: 50,
})

t.test('an endpoint slower than the poll interval passes: one probe may wait for it', async t => {
  const url = await slowServer(t, 700)
  const r = await waitHealthy(input(url, 5_000))
  t.equal(r.detail, `${url} answered 200`)
})

t.test('a wrong status until the deadline fails, naming the URL, the expected and the last status', async t => {
  const url = await slowServer(t, 0, 503)
  await t.rejects(waitHealthy(input(url, 300)), { code: 'HEALTH_FAILED', message: /did not answer 200 within 0 s \(last: status 503\)/ })
})

t.test('the probe timeout: what is left of the health timeout, between 100 ms and 10 s', async t => {
  t.equal(probeTimeoutMs(2_500), 2_500)
  t.equal(probeTimeoutMs(60_000), 10_000)
  t.equal(probeTimeoutMs(-5), 100)
})

t.test('a failure carries the tail of the service logs; a planted link or FIFO is named, never read', async t => {
  const dir = t.testdir({ 'canary.txt': 'canary-only-root-reads-this', logs: { 'app-out.log': 'listening\nboom: API_KEY=s3cret\n' } })
  const logsDir = join(dir, 'logs')
  symlinkSync(join(dir, 'canary.txt'), join(logsDir, 'app-error.log'))
  const url = await slowServer(t, 0, 500)
  const i = { ...input(url, 100), logs: serviceLogs(logsDir, 'app', process.getuid?.() ?? 0), scrub: (s: string) => s.replaceAll('s3cret', '***') }
  const e = await waitHealthy(i).then(() => undefined, (x: unknown) => x)
  t.match(e, { code: 'HEALTH_FAILED' })
  const message = e instanceof Error ? e.message : ''
  t.match(message, `--- ${join(logsDir, 'app-error.log')} not read: it is a symbolic link`)
  t.match(message, /app-out\.log \(last 2 lines\)\nlistening\nboom: API_KEY=\*\*\*/, 'the real log, scrubbed')
  t.notMatch(message, /canary/)
  t.match(e, { evidence: [
    { kind: 'service-log', source: join(logsDir, 'app-error.log'), text: 'not read: it is a symbolic link' },
    { kind: 'service-log', source: join(logsDir, 'app-out.log'), text: 'listening\nboom: API_KEY=***' },
  ] }, 'the run report\'s evidence: the same, from the same read')
  t.notMatch(JSON.stringify(e), /canary/)
  const none = await waitHealthy({ ...i, logs: serviceLogs(join(dir, 'none'), 'app', 0) }).then(() => undefined, (x: unknown) => x)
  t.match(none, { message: /\(the service wrote no log output\)$/ })
})
