import t from 'tap'
import { resolveSettings, type SettingsInput } from '../../agent/src/settings.js'
import { ConfigError } from '../../agent/src/errors.js'
import { thrown } from '../helpers/thrown.js'

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
