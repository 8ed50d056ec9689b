import t from 'tap'
import { buildEcosystem, type EcosystemInput } from '../../../agent/src/pm2/ecosystem.js'
import { resolveServiceSpec } from '../../../agent/src/config/manifest.js'

const input = (start: object, extra: object = {}): EcosystemInput => ({
  spec: resolveServiceSpec({ version: 1, services: { api: { start, ...extra } as never } }, 'api', 'm.json', undefined),
  current: '/srv/api/current',
  envFile: '/etc/bootstrap-agent/env/api.env',
  appLogDir: '/srv/api/logs',
  preload: '/opt/agent/env-preload.js',
  wrapper: '/opt/agent/run-with-env.js',
  npmBin: 'npm',
})

t.test('a Node script loads secrets through the preload, never through PM2 env', async t => {
  const [app] = buildEcosystem(input({ script: 'server.js' }, { instances: 'max', env: { PORT: '3000' }, nodeArgs: ['--max-old-space-size=256'] })).apps
  t.equal(app?.script, '/srv/api/current/server.js', 'paths go through current, so a reload picks up a switch')
  t.same(app?.node_args, ['--import', '/opt/agent/env-preload.js', '--max-old-space-size=256'])
  t.equal(app?.exec_mode, 'cluster')
  t.same(app?.env, { PORT: '3000', BOOTSTRAP_ENV_FILE: '/etc/bootstrap-agent/env/api.env', BOOTSTRAP_SERVICE: 'api' })
  t.equal(app?.error_file, '/srv/api/logs/api-error.log')
})

t.test('commands and npm scripts run through the wrapper with the preload', async t => {
  const [cmd] = buildEcosystem(input({ command: ['python3', '-m', 'bot'] })).apps
  t.equal(cmd?.script, '/opt/agent/run-with-env.js')
  t.same(cmd?.args, ['python3', '-m', 'bot'])
  t.same(cmd?.node_args, ['--import', '/opt/agent/env-preload.js'])
  const [npm] = buildEcosystem(input({ npm: 'start' })).apps
  t.same(npm?.args, ['npm', 'run', 'start'])
  t.equal(npm?.exec_mode, 'fork')
})

t.test('a static site is served by PM2 from the built directory', async t => {
  const [app] = buildEcosystem(input({ static: { dir: 'dist', port: 8080, spa: true } }, { path: 'apps/admin' })).apps
  t.equal(app?.script, 'serve')
  t.equal(app?.cwd, '/srv/api/current/apps/admin')
  t.match(app?.env, { PM2_SERVE_PATH: '/srv/api/current/apps/admin/dist', PM2_SERVE_PORT: '8080', PM2_SERVE_SPA: 'true' })
})
