import t from 'tap'
import { readFile } from 'node:fs/promises'
import { OPTIONS, reportLogGroupName, reportLogGroupOf, resolveConfigLocation, resolveSettings, resolveWatchSettings, type SettingsInput } from '../../../agent/src/config/settings.js'
import { ConfigError } from '../../../agent/src/core/errors.js'
import { thrown } from '../../helpers/thrown.js'

const base = (over: Partial<SettingsInput> = {}): SettingsInput => ({
  flags: {},
  env: {},
  agentEnv: {},
  tags: { Service: 'auth-service', Environment: 'stage', Repository: 'https://git.example.com/org/auth.git' },
  mode: 'local',
  ...over,
})

t.test('defaults and the branch map', async t => {
  const s = resolveSettings(base())
  t.equal(s.service, 'auth-service')
  t.equal(s.branch, 'stage')
  t.equal(s.branchSource, 'branch-map')
  t.same(s.secretIds, ['stage/auth-service'])
  t.same(s.parameterPaths, ['/stage/auth-service/'])
  t.equal(s.keepReleases, 3)
  t.equal(s.gitTimeoutMs, 120_000)
  t.ok(Object.isFrozen(s))
  t.equal(resolveSettings(base({ tags: { Service: 'a', Environment: 'prod', Repository: 'file:///r.git' } })).branch, 'main')
})

t.test('precedence: flag > process env > agent.env > tag > default', async t => {
  const tags = { Service: 'from-tag', Environment: 'test', Repository: 'file:///r.git' }
  t.equal(resolveSettings(base({ tags })).service, 'from-tag')
  t.equal(resolveSettings(base({ tags, agentEnv: { BOOTSTRAP_SERVICE: 'from-file' } })).service, 'from-file')
  t.equal(resolveSettings(base({ tags, agentEnv: { BOOTSTRAP_SERVICE: 'from-file' }, env: { BOOTSTRAP_SERVICE: 'from-env' } })).service, 'from-env')
  t.equal(resolveSettings(base({ tags, env: { BOOTSTRAP_SERVICE: 'from-env' }, flags: { service: 'from-flag' } })).service, 'from-flag')
  const s = resolveSettings(base({ tags: { ...tags, Branch: 'feature/x' } }))
  t.equal(s.branch, 'feature/x')
  t.equal(s.branchSource, 'tag')
  t.equal(resolveSettings(base({ tags: { ...tags, App: 'other' }, env: { BOOTSTRAP_TAG_KEY_SERVICE: 'App' } })).service, 'other')
  t.equal(resolveSettings(base({ env: { BOOTSTRAP_BRANCH_MAP: 'stage=release/stage' } })).branch, 'release/stage')
  t.same(resolveSettings(base({ env: { BOOTSTRAP_SECRET_IDS: '{environment}/shared?, {environment}/{service}' } })).secretIds, ['stage/shared?', 'stage/auth-service'])
})

const bad: [string, Partial<SettingsInput>, RegExp][] = [
  ['missing service tag', { tags: { Environment: 'stage', Repository: 'file:///r.git' } }, /service is not set[^]*--tag Service=/],
  ['service with shell metacharacters', { tags: { Service: 'a;rm -rf /', Environment: 'stage', Repository: 'file:///r.git' } }, /"a;rm -rf \/" is not a valid service name/],
  ['service with ../', { tags: { Service: '../etc', Environment: 'stage', Repository: 'file:///r.git' } }, /not a valid service name/],
  ['empty service', { tags: { Service: '', Environment: 'stage', Repository: 'file:///r.git' } }, /service is not set/],
  ['unknown environment', { tags: { Service: 'a', Environment: 'qa', Repository: 'file:///r.git' } }, /no branch for environment "qa"/],
  ['branch with ..', { tags: { Service: 'a', Environment: 'stage', Repository: 'file:///r.git', Branch: 'a..b' } }, /not a valid branch name: it contains '\.\.'/],
  ['branch as option', { tags: { Service: 'a', Environment: 'stage', Repository: 'file:///r.git', Branch: '--upload-pack=x' } }, /starts with '-'/],
  ['branch with newline', { tags: { Service: 'a', Environment: 'stage', Repository: 'file:///r.git', Branch: 'a\nb' } }, /"a\\nb" is not a valid branch name/],
  ['repository with credentials', { tags: { Service: 'a', Environment: 'stage', Repository: 'https://user:tok@host/r.git' } }, /carries credentials/],
  ['repository as option', { tags: { Service: 'a', Environment: 'stage', Repository: '--upload-pack=touch /tmp/x' } }, /not a valid repository URL/],
  ['keep-releases out of range', { flags: { 'keep-releases': '0' } }, /--keep-releases = "0" is not valid: expected a whole number from 1 to 50/],
  ['timeout not a number', { env: { BOOTSTRAP_GIT_TIMEOUT: '10s' } }, /BOOTSTRAP_GIT_TIMEOUT = "10s"/],
  ['relative root', { flags: { root: 'sandbox' } }, /expected an absolute path/],
  ['service user root', { env: { BOOTSTRAP_SERVICE_USER: 'root' } }, /never runs as root/],
  ['bad branch map', { env: { BOOTSTRAP_BRANCH_MAP: 'stage' } }, /expected environment=branch pairs/],
  ['bad reason', { flags: { reason: 'reboot' } }, /--reason = "reboot"/],
]
for (const [name, over, re] of bad) {
  t.test(`rejects ${name}`, async t => {
    const e = thrown(() => resolveSettings(base(over)))
    if (!(e instanceof ConfigError)) return t.fail(`expected a ConfigError, got ${String(e)}`)
    t.equal(e.exitCode, 2)
    t.match(`${e.message} | ${e.remedy}`, re)
    t.ok(e.remedy.length > 0, 'has a remedy')
  })
}

t.test('a long tag value is quoted cut short in the error', async t => {
  const long = 'x'.repeat(5000)
  const e = thrown(() => resolveSettings(base({ tags: { Service: long, Environment: 'stage', Repository: 'file:///r.git' } })))
  t.type(e, ConfigError)
  t.ok(e instanceof Error && e.message.length < 400, 'message stays short')
})

t.test('watch options: defaults, bounds, warm-pool reason', async t => {
  const s = resolveSettings(base({ flags: { reason: 'warm-pool' } }))
  t.equal(s.reason, 'warm-pool')
  t.same([s.watchIntervalMs, s.preStopTimeoutMs, s.imdsTokenTtlS], [5000, 30_000, 21600])
  t.match(thrown(() => resolveSettings(base({ flags: { reason: 'reboot' } }))), { message: /expected boot, ssm, manual, warm-pool/ })
  t.match(thrown(() => resolveSettings(base({ env: { BOOTSTRAP_WATCH_INTERVAL: '0' } }))), { exitCode: 2, message: /BOOTSTRAP_WATCH_INTERVAL = "0" is not valid: expected a whole number from 1 to 60/ })
  t.match(thrown(() => resolveSettings(base({ flags: { 'imds-token-ttl': '21601' } }))), { message: /--imds-token-ttl = "21601" is not valid: expected a whole number from 1 to 21600/ })
})

const pick = (s: { awsTimeoutMs: number; pm2TimeoutMs: number }) => [s.awsTimeoutMs, s.pm2TimeoutMs]

t.test('AWS and PM2 timeouts: defaults, every layer, bounds; the AWS budget is known before the agent configuration parameter is read', async t => {
  const s = resolveSettings(base())
  t.same([s.awsTimeoutMs, s.pm2TimeoutMs], [60_000, 120_000])
  t.equal(resolveSettings(base({ env: { BOOTSTRAP_AWS_TIMEOUT: '3' } })).awsTimeoutMs, 3000)
  t.equal(resolveSettings(base({ flags: { 'pm2-timeout': '5' } })).pm2TimeoutMs, 5000)
  const remote = { source: 'SSM parameter /bootstrap/stage/auth-service', values: { 'aws-timeout': '20', 'pm2-timeout': '30' } }
  t.same(pick(resolveSettings(base({ remoteConfig: remote }))), [20_000, 30_000], 'the agent configuration parameter may set both')
  t.equal(resolveConfigLocation(base({ agentEnv: { BOOTSTRAP_AWS_TIMEOUT: '7' } })).awsTimeoutMs, 7000, 'the budget of reading the parameter comes from below it')
  const w = resolveWatchSettings({ flags: { 'aws-timeout': '9' }, env: { BOOTSTRAP_PM2_TIMEOUT: '11' }, agentEnv: {}, mode: 'aws' })
  t.same([w.awsTimeoutMs, w.pm2TimeoutMs], [9000, 11_000], 'the watch (its drain and terminating hook) has both')
  t.match(thrown(() => resolveSettings(base({ env: { BOOTSTRAP_AWS_TIMEOUT: '0' } }))), { exitCode: 2, message: /BOOTSTRAP_AWS_TIMEOUT = "0" is not valid: expected a whole number from 1 to 3600/, remedy: /fix BOOTSTRAP_AWS_TIMEOUT/ })
  t.match(thrown(() => resolveConfigLocation(base({ flags: { 'aws-timeout': '2m' } }))), { exitCode: 2, message: /--aws-timeout = "2m" is not valid/ })
  t.match(thrown(() => resolveSettings(base({ flags: { 'pm2-timeout': '3601' } }))), { exitCode: 2, message: /--pm2-timeout = "3601" is not valid: expected a whole number from 1 to 3600/ })
  t.match(thrown(() => resolveWatchSettings({ flags: {}, env: { BOOTSTRAP_PM2_TIMEOUT: '-1' }, agentEnv: {}, mode: 'aws' })), { exitCode: 2, message: /BOOTSTRAP_PM2_TIMEOUT = "-1"/ })
})
t.test('resolveWatchSettings: no tags, no repository needed; the service is optional', async t => {
  const w = resolveWatchSettings({ flags: { root: '/srv/x/' }, env: { BOOTSTRAP_PRE_STOP_TIMEOUT: '45' }, agentEnv: { BOOTSTRAP_WATCH_INTERVAL: '2' }, mode: 'aws' })
  t.same(w, {
    root: '/srv/x', service: undefined, serviceUser: 'bootstrap-app', manifestFile: 'bootstrap-agent.json', logLevel: 'info',
    heartbeatIntervalMs: 0, awsTimeoutMs: 60_000, pm2TimeoutMs: 120_000, watchIntervalMs: 2000, preStopTimeoutMs: 45_000, imdsTokenTtlS: 21600,
    reportLogGroupTemplate: undefined,
  })
  t.ok(Object.isFrozen(w))
  t.equal(resolveWatchSettings({ flags: { service: 'api' }, env: {}, agentEnv: {}, mode: 'aws' }).service, 'api')
  t.match(thrown(() => resolveWatchSettings({ flags: { service: 'API!' }, env: {}, agentEnv: {}, mode: 'aws' })), { exitCode: 2, message: /--service/ })
  t.match(thrown(() => resolveWatchSettings({ flags: { 'service-user': 'root' }, env: {}, agentEnv: {}, mode: 'aws' })), { message: /never runs as root/ })
  t.match(thrown(() => resolveWatchSettings({ flags: { root: 'rel' }, env: {}, agentEnv: {}, mode: 'aws' })), { message: /expected an absolute path/ })
})

t.test('run reports: off by default; the log group from every layer, {environment} and {service} replaced, validated', async t => {
  t.equal(resolveSettings(base()).reportLogGroup, undefined, 'off by default')
  t.equal(resolveSettings(base({ agentEnv: { BOOTSTRAP_REPORT_LOG_GROUP: '/bootstrap-agent/{environment}/{service}' } })).reportLogGroup, '/bootstrap-agent/stage/auth-service')
  t.equal(resolveSettings(base({ flags: { 'report-log-group': 'runs.#1' } })).reportLogGroup, 'runs.#1')
  const remote = { source: 'SSM parameter /bootstrap/stage/auth-service', values: { 'report-log-group': '/reports/{service}' } }
  t.equal(resolveSettings(base({ remoteConfig: remote })).reportLogGroup, '/reports/auth-service', 'the agent configuration parameter may set it')
  for (const v of ['/runs with space', 'a:b', 'x'.repeat(513), '/runs/{region}']) {
    t.match(thrown(() => resolveSettings(base({ env: { BOOTSTRAP_REPORT_LOG_GROUP: v } }))), { exitCode: 2, message: /BOOTSTRAP_REPORT_LOG_GROUP = ".*" is not valid: expected a CloudWatch Logs group name/, remedy: 'fix BOOTSTRAP_REPORT_LOG_GROUP' }, v.slice(0, 20))
  }
})

t.test('reportLogGroupOf: the group of a run whose settings failed, when it can be named', async t => {
  const env = { BOOTSTRAP_REPORT_LOG_GROUP: '/bootstrap-agent/{environment}/{service}' }
  const noRepo = base({ env, tags: { Service: 'auth-service', Environment: 'stage' } })
  t.match(thrown(() => resolveSettings(noRepo)), { message: /repository URL is not set/ }, 'these settings fail')
  t.equal(reportLogGroupOf(noRepo), '/bootstrap-agent/stage/auth-service', 'the report still has a group')
  t.equal(reportLogGroupOf(base({ env, tags: { Environment: 'stage' } })), undefined, 'no service: no group to name')
  t.equal(reportLogGroupOf(base({ env: { BOOTSTRAP_REPORT_LOG_GROUP: '/runs' }, tags: {} })), '/runs', 'a fixed name needs neither')
  t.equal(reportLogGroupOf(base()), undefined, 'off')
  t.equal(reportLogGroupOf(base({ env: { BOOTSTRAP_REPORT_LOG_GROUP: 'bad name' } })), undefined, 'an invalid name is the settings error, not a report')
})

t.test('the watch keeps the template (state.json names the service and environment at a drain), checked at its start', async t => {
  const w = resolveWatchSettings({ flags: {}, env: {}, agentEnv: { BOOTSTRAP_REPORT_LOG_GROUP: '/bootstrap-agent/{environment}/{service}' }, mode: 'aws' })
  t.equal(w.reportLogGroupTemplate, '/bootstrap-agent/{environment}/{service}')
  t.equal(reportLogGroupName(w.reportLogGroupTemplate ?? '', 'agent.env', 'prod', 'api'), '/bootstrap-agent/prod/api')
  t.match(thrown(() => resolveWatchSettings({ flags: { 'report-log-group': 'a b' }, env: {}, agentEnv: {}, mode: 'aws' })), { exitCode: 2, message: /--report-log-group = "a b" is not valid/ })
})

t.test("the README's configuration reference has a row for every option", async t => {
  const readme = await readFile(new URL('../../../README.md', import.meta.url), 'utf8')
  const reference = readme.slice(readme.indexOf('## Configuration reference'), readme.indexOf('### Tags'))
  // the tag key options share one row ("--tag-key-service etc.", "BOOTSTRAP_TAG_KEY_SERVICE, _ENVIRONMENT, ...")
  for (const o of OPTIONS) {
    const documented = o.flag.startsWith('tag-key-') ? reference.includes(`_${o.env.split('_').pop()}`) : reference.includes(`\`--${o.flag}\``)
    t.ok(documented, `--${o.flag} (${o.env}) is in the README table`)
  }
})

t.test('release cache: off by default; s3://bucket/prefix from every layer, templates expanded; the pointer fallback', async t => {
  const aws = (over: Partial<SettingsInput> = {}) => base({ mode: 'aws', ...over })
  const off = resolveSettings(aws())
  t.equal(off.releaseCache, undefined, 'off unless set')
  t.equal(off.releaseCacheFallback, true, 'the branch-pointer fallback is on by default')
  t.same(resolveSettings(aws({ flags: { 'release-cache': 's3://acme-releases/fleet/{environment}/' } })).releaseCache, { bucket: 'acme-releases', prefix: 'fleet/stage', url: 's3://acme-releases/fleet/stage' })
  t.same(resolveSettings(aws({ env: { BOOTSTRAP_RELEASE_CACHE: 's3://acme-releases' } })).releaseCache, { bucket: 'acme-releases', prefix: '', url: 's3://acme-releases' }, 'the bucket root')
  t.equal(resolveSettings(aws({ agentEnv: { BOOTSTRAP_RELEASE_CACHE: 's3://b.x-1/{service}' } })).releaseCache?.prefix, 'auth-service', 'agent.env; {service} expanded')
  const remote = { source: 'SSM parameter /bootstrap/stage/auth-service', values: { 'release-cache': 's3://fleet/stage', 'release-cache-fallback': 'off' } }
  const fromParam = resolveSettings(aws({ remoteConfig: remote }))
  t.equal(fromParam.releaseCache?.url, 's3://fleet/stage', 'the agent configuration parameter')
  t.equal(fromParam.releaseCacheFallback, false)
  t.equal(resolveSettings(aws({ remoteConfig: remote, agentEnv: { BOOTSTRAP_RELEASE_CACHE: 'none' } })).releaseCache, undefined, '"none" turns a lower layer\'s value off')
  for (const v of ['https://bucket/x', 's3://UPPER/x', 's3://ab/x', 's3://bucket/../prod', 's3://bucket/a//b', 's3://bucket/a b', 's3://bu..cket/x', 's3://bucket/./x']) {
    t.match(thrown(() => resolveSettings(aws({ flags: { 'release-cache': v } }))), { exitCode: 2, message: /--release-cache = .* is not valid: expected s3:\/\/BUCKET\/PREFIX/ }, v)
  }
  t.match(thrown(() => resolveSettings(base({ flags: { 'release-cache': 's3://bucket/x' } }))), { exitCode: 2, message: /local mode makes no AWS call/ })
  t.equal(resolveSettings(base({ flags: { 'release-cache': 'none' } })).releaseCache, undefined, '"none" is fine in local mode')
  t.match(thrown(() => resolveSettings(aws({ env: { BOOTSTRAP_RELEASE_CACHE_FALLBACK: 'yes' } }))), { exitCode: 2, message: /BOOTSTRAP_RELEASE_CACHE_FALLBACK = "yes" is not valid: expected on or off/ })
})
