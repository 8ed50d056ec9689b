/**
 * The kinds of service a manifest can declare, each deployed for real from one monorepo:
 * a static site produced by its build command and served by PM2 (a React admin panel's shape),
 * a non-Node program (Python) that PM2 runs with the secrets in its environment, and an
 * `npm start` service checked by the default PM2-online health gate.
 */
import t from 'tap'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { createFixtureRepo } from '../helpers/fixture-repo.js'
import { freePort, killPm2, pm2List, removeSandbox, runCli, sandboxDir, writeSecrets } from '../helpers/sandbox.js'

const dir = sandboxDir('kinds')
const [adminPort, botPort, workerPort] = [await freePort(), await freePort(), await freePort()]
const apiKey = 'kinds-secret-value-$HOME-"q"-\\n-#'
const lock = JSON.stringify({ name: 'x', version: '1.0.0', lockfileVersion: 3, requires: true, packages: { '': { name: 'x', version: '1.0.0' } } })
const repo = await createFixtureRepo({
  root: join(dir, 'git'),
  name: 'mono',
  branches: {
    stage: {
      'bootstrap-agent.json': JSON.stringify({
        version: 1,
        services: {
          admin: {
            path: 'apps/admin',
            build: ['node', 'build.js'],
            start: { static: { dir: 'dist', port: adminPort, spa: true } },
            health: { url: `http://127.0.0.1:${adminPort}/`, timeoutSeconds: 10 },
          },
          bot: {
            path: 'services/bot',
            start: { command: ['python3', 'bot.py', String(botPort)] },
            health: { url: `http://127.0.0.1:${botPort}/`, timeoutSeconds: 10 },
            requiredEnv: ['API_KEY'],
          },
          worker: { path: 'services/worker', env: { PORT: String(workerPort) }, health: { stableSeconds: 1 } },
        },
      }),
      'apps/admin/package.json': JSON.stringify({ name: 'x', version: '1.0.0', private: true }),
      'apps/admin/package-lock.json': lock,
      'apps/admin/build.js': "require('fs').mkdirSync('dist', { recursive: true }); require('fs').writeFileSync('dist/index.html', '<h1>admin built at ' + (process.env.API_KEY ? 'LEAK' : 'build time') + '</h1>')\n",
      'services/bot/bot.py': [
        'import hashlib, http.server, os, sys',
        'class H(http.server.BaseHTTPRequestHandler):',
        '    def do_GET(self):',
        "        body = hashlib.sha256(os.environ['API_KEY'].encode()).hexdigest().encode()",
        '        self.send_response(200); self.end_headers(); self.wfile.write(body)',
        "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()",
        '',
      ].join('\n'),
      'services/worker/package.json': JSON.stringify({ name: 'x', version: '1.0.0', private: true, scripts: { start: 'node worker.js' } }),
      'services/worker/package-lock.json': lock,
      'services/worker/worker.js': "require('http').createServer((q, s) => s.end(String(process.env.API_KEY === undefined ? 'no key' : 'has key'))).listen(Number(process.env.PORT), '127.0.0.1')\n",
    },
  },
})
const secretsFile = join(dir, 'secrets.json')
writeSecrets(secretsFile, { secrets: { 'stage/admin': {}, 'stage/bot': { API_KEY: apiKey }, 'stage/worker': { API_KEY: apiKey } } })

const deploy = async (service: string) => {
  const root = join(dir, service)
  t.teardown(() => killPm2(root))
  return { root, r: await runCli(['run', '--local', '--root', root, '--json', '--tag', `Service=${service}`, '--tag', 'Environment=stage', '--tag', `Repository=${repo.fileUrl}`, '--secrets-file', secretsFile]) }
}
t.teardown(() => removeSandbox(dir))

t.test('a static site built by its build command, served by PM2', async t => {
  const { r } = await deploy('admin')
  t.equal(r.code, 0, r.stderr)
  const res = await fetch(`http://127.0.0.1:${adminPort}/some/client/route`)
  t.equal(res.status, 200)
  t.match(await res.text(), '<h1>admin built at build time</h1>', 'SPA fallback serves index.html; the build ran without secrets')
})

t.test('a non-Node program gets its secrets in its environment', async t => {
  const { r, root } = await deploy('bot')
  t.equal(r.code, 0, r.stderr)
  const body = await (await fetch(`http://127.0.0.1:${botPort}/`)).text()
  t.equal(body, createHash('sha256').update(apiKey).digest('hex'), 'byte-exact, through run-with-env')
  t.equal(pm2List(root)[0]?.pm2_env.status, 'online')
})

t.test('npm start with the default PM2-online health gate', async t => {
  const { r, root } = await deploy('worker')
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /online for \d+ ms without restarts/)
  t.equal(await (await fetch(`http://127.0.0.1:${workerPort}/`)).text(), 'has key')
  t.equal(pm2List(root)[0]?.pm2_env.status, 'online')
})
