/**
 * Rendering user-data: the closed parameter set (unknown, missing, secret-looking names and
 * values), quoting of hostile values, agent.env values that read back byte-exact, the unit
 * compaction and the 16 KB limit. Pure, except where a test says it runs bash (`bash -n`, and
 * bash reading quoted words back).
 */
import t from 'tap'
import fc from 'fast-check'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { parseAgentEnv } from '../../../agent/src/config/agent-env.js'
import { isAgentError } from '../../../agent/src/core/errors.js'
import {
  AGENT_ENV_PARAMS, agentEnvValue, compactUnit, formatAgentEnv, paramHelp, parseParamFlags, renderUserData, shellQuote, USER_DATA_MAX_BYTES,
} from '../../../agent/src/operator/user-data.js'
import { thrown } from '../../helpers/thrown.js'

const templateText = readFileSync(new URL('../../../user-data/templates/bootstrap.sh.tpl', import.meta.url), 'utf8')
const unit = `# a comment
[Unit]
Description=test unit

; another comment
[Service]
Type=oneshot
ExecStart=/opt/bootstrap-agent/current/bin/bootstrap-agent run --reason boot
`
const SHA = 'ab'.repeat(32)
const base = { 'artifact-url': 'https://releases.example.com/bootstrap-agent-1.2.3.tar.gz', 'artifact-sha256': SHA, region: 'eu-west-1', 'node-install': 'preinstalled' }
const watchUnit = `# the watch
[Service]
Type=simple
ExecStart=/opt/bootstrap-agent/current/bin/bootstrap-agent watch
`
const render = (params: Record<string, string>, extra: Partial<{ templateText: string; unit: string; watchUnit: string }> = {}) =>
  renderUserData({ templateName: 'bootstrap', templateText, unit, watchUnit, agentVersion: '1.2.3', ...extra, params })

/** The error a render throws, with its policy: exit 2, a stable code. */
const refusal = (params: Record<string, string>, extra: Partial<{ templateText: string; unit: string; watchUnit: string }> = {}) => {
  const e = thrown(() => render(params, extra))
  if (!isAgentError(e)) throw new Error(`expected an AgentError, got ${String(e)}`)
  return e
}

/** The body of the heredoc named `delimiter` in a rendered script. */
const heredoc = (text: string, delimiter: string): string => {
  const m = new RegExp(`<<'${delimiter}'\\n([^]*?)\\n${delimiter}\\n`).exec(text)
  if (!m?.[1]) throw new Error(`no heredoc ${delimiter}`)
  return m[1]
}

/** bash -n over a script (this test runs bash). */
const bashSyntax = (text: string) => spawnSync('bash', ['-n'], { input: text, encoding: 'utf8' })

t.test('a render: a bash script with the parameters quoted, agent.env and the unit embedded', async t => {
  const r = render({ ...base, BOOTSTRAP_LOG_LEVEL: 'debug', BOOTSTRAP_BRANCH_MAP: 'test=test,prod=release' })
  t.ok(r.text.startsWith('#!/bin/bash\n'))
  t.match(r.text, /^set -euo pipefail$/m)
  t.match(r.text, "ARTIFACT_URL='https://releases.example.com/bootstrap-agent-1.2.3.tar.gz'")
  t.match(r.text, `ARTIFACT_SHA256='${SHA}'`)
  t.match(r.text, "NODE_INSTALL='preinstalled'")
  t.match(r.text, "NODE_MAJOR='20'", 'a preinstalled Node needs only to run the agent')
  t.match(r.text, 'rendered by bootstrap-agent 1.2.3, template bootstrap')
  t.notMatch(r.text, /\{\{/, 'every placeholder is filled')
  t.equal(r.bytes, Buffer.byteLength(r.text))
  t.ok(r.bytes < 10 * 1024, `a few KB (${r.bytes} bytes)`)
  t.equal(`${heredoc(r.text, 'AGENT_ENV_EOF')}\n`, r.agentEnv)
  t.same(parseAgentEnv(r.agentEnv, 'agent.env'), { AWS_REGION: 'eu-west-1', BOOTSTRAP_LOG_LEVEL: 'debug', BOOTSTRAP_BRANCH_MAP: 'test=test,prod=release' })
  t.equal(bashSyntax(r.text).status, 0, 'bash -n')
})

t.test('Node install methods', async t => {
  t.match(render({ ...base, 'node-install': 'al2023' }).text, "NODE_MAJOR='22'")
  t.match(render({ ...base, 'node-install': 'al2023', 'node-major': '24' }).text, "NODE_MAJOR='24'")
  const node = { 'node-url': 'https://nodejs.org/dist/v22.12.0/node-v22.12.0-linux-x64.tar.xz', 'node-sha256': 'cd'.repeat(32) }
  const ubuntu = render({ ...base, 'node-install': 'ubuntu', ...node }).text
  t.match(ubuntu, `NODE_URL='${node['node-url']}'`)
  t.match(ubuntu, "NODE_MAJOR='22'")
  t.match(refusal({ ...base, 'node-install': 'ubuntu' }).message, /missing --param node-url, node-sha256/)
  t.match(refusal({ ...base, 'node-install': 'al2023', ...node }).message, /node-url applies only to node-install=ubuntu, not al2023/)
  t.match(refusal({ ...base, 'node-install': 'preinstalled', 'node-major': '22' }).message, /node-major applies only to node-install=al2023/)
  t.match(refusal({ ...base, 'node-install': 'al2023', 'node-major': '20' }).message, /node-major = "20" is not valid: expected a Node major version of 22 or newer/)
  t.match(refusal({ ...base, 'node-install': 'debian' }).message, /node-install = "debian" is not valid: expected al2023, ubuntu, preinstalled/)
})

t.test('unknown and missing parameters: exit 2, named, with the allowed ones listed', async t => {
  const unknown = refusal({ ...base, 'artifact-urll': 'https://x.example.com/a' })
  t.equal(unknown.exitCode, 2)
  t.equal(unknown.code, 'USER_DATA_PARAM_INVALID')
  t.match(unknown.message, /unknown --param "artifact-urll": allowed are template parameters artifact-url, artifact-sha256, region, node-install/)
  t.match(unknown.message, /BOOTSTRAP_TAG_KEY_SERVICE/)
  for (const name of ['BOOTSTRAP_LOCAL', 'AWS_REGION', 'PATH']) {
    t.match(refusal({ ...base, [name]: 'x' }).message, `unknown --param "${name}"`, `${name} is not agent.env material`)
  }
  t.match(refusal({ ...base, BOOTSTRAP_ROOT: '/srv' }).message, /--param BOOTSTRAP_ROOT does not belong in user-data: the root is \/ on an instance/)
  t.match(refusal({ ...base, BOOTSTRAP_SECRETS_FILE: '/x.json' }).message, /BOOTSTRAP_SECRETS_FILE does not belong in user-data: it is local mode's stand-in/)
  const { region: _r, 'artifact-sha256': _s, ...partial } = base
  const missing = refusal(partial)
  t.equal(missing.exitCode, 2)
  t.match(missing.message, /missing --param artifact-sha256, region: required are artifact-url, artifact-sha256, region, node-install/)
  t.match(refusal({ ...base, BOOTSTRAP_LOG_LEVEL: '' }).message, /--param BOOTSTRAP_LOG_LEVEL is empty/)
  t.match(refusal({ ...base, 'artifact-sha256': SHA.toUpperCase() }).message, /artifact-sha256 = .* expected 64 lower-case hex digits/)
  t.match(refusal({ ...base, 'artifact-url': 'ftp://example.com/a.tar.gz' }).message, /artifact-url = .* expected an https:\/\/, http:\/\/ or s3:\/\/ URL/)
  t.match(refusal({ ...base, region: 'Europe' }).message, /region = "Europe" is not valid: expected a region like eu-west-1/)
  t.match(refusal({ ...base, BOOTSTRAP_TAG_KEY_SERVICE: 'x'.repeat(2049) }).message, /is 2049 characters long: at most 2048/)
  t.doesNotThrow(() => render({ ...base, 'artifact-url': 's3://releases-bucket/agent/bootstrap-agent-1.2.3.tar.gz' }), 's3:// URLs are fetched with the instance profile')
})

t.test('every agent setting but the root and the local secrets file may go into agent.env', async t => {
  t.ok(AGENT_ENV_PARAMS.includes('BOOTSTRAP_TAG_KEY_SERVICE'))
  t.ok(AGENT_ENV_PARAMS.includes('BOOTSTRAP_CONFIG_PARAMETER'))
  t.notOk(AGENT_ENV_PARAMS.includes('BOOTSTRAP_ROOT'))
  const r = render({
    ...base,
    BOOTSTRAP_TAG_KEY_SERVICE: 'app:service',
    BOOTSTRAP_GIT_CREDENTIAL_SECRET: 'stage/git-deploy',
    BOOTSTRAP_SECRET_IDS: '{environment}/shared?,{environment}/{service}',
    BOOTSTRAP_CONFIG_PARAMETER: 'none',
    AWS_ENDPOINT_URL_SECRETS_MANAGER: 'https://vpce-1.secretsmanager.eu-west-1.vpce.amazonaws.com',
  })
  t.equal(parseAgentEnv(r.agentEnv, 'agent.env')['BOOTSTRAP_TAG_KEY_SERVICE'], 'app:service')
  t.match(refusal({ ...base, AWS_ENDPOINT_URL_SSM: 'not a url' }).message, /AWS_ENDPOINT_URL_SSM = "not a url" is not valid/)
})

t.test('agent settings are checked by the agent settings parser at render time, not at boot', async t => {
  t.match(refusal({ ...base, BOOTSTRAP_LOG_LEVEL: 'verbose' }).message, /BOOTSTRAP_LOG_LEVEL \(agent.env\) = "verbose" is not valid: expected trace, debug, info, warn or error/)
  t.match(refusal({ ...base, BOOTSTRAP_KEEP_RELEASES: 'many' }).message, /BOOTSTRAP_KEEP_RELEASES .* expected a whole number from 1 to 50/)
  t.match(refusal({ ...base, BOOTSTRAP_BRANCH_MAP: 'prod' }).message, /expected environment=branch pairs/)
  t.match(refusal({ ...base, BOOTSTRAP_SERVICE: '../etc' }).message, /is not a valid service name/)
  t.equal(refusal({ ...base, BOOTSTRAP_SERVICE_USER: 'root' }).exitCode, 2)
})

t.test('secrets: secret-looking names and credential-shaped values are refused, without echoing the value', async t => {
  for (const name of ['API_TOKEN', 'DB_PASSWORD', 'AWS_SECRET_ACCESS_KEY', 'AWS_ACCESS_KEY_ID', 'STRIPE_API_KEY', 'SIGNING_KEY', 'BOOTSTRAP_GITHUB_TOKEN', 'GIT_CREDENTIALS', 'ssh-private-key']) {
    const e = refusal({ ...base, [name]: 'hunter2-value' })
    t.equal(e.exitCode, 2, name)
    t.match(e.message, `--param ${name} looks like a secret`, name)
    t.match(e.remedy, /Secrets Manager or Parameter Store/)
    t.notMatch(e.message, 'hunter2', 'the value is not echoed')
  }
  // allow-listed names that merely mention secrets or keys hold names, never values
  t.doesNotThrow(() => render({ ...base, BOOTSTRAP_TAG_KEY_BRANCH: 'Branch', BOOTSTRAP_SECRET_IDS: 'prod/app', BOOTSTRAP_GIT_CREDENTIAL_SECRET: 'prod/git' }))

  const shapes: [string, string, RegExp][] = [
    ['artifact-url', 'https://bucket.s3.amazonaws.com/a.tar.gz?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIDEXAMPLE&X-Amz-Signature=f00d', /presigned/],
    ['artifact-url', 'https://deploy:s3cr3t-pass@releases.example.com/a.tar.gz', /password/],
    ['artifact-url', 'https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@example.com/a.tar.gz', /credentials/],
    ['BOOTSTRAP_REPOSITORY', 'https://x-access-token:s3cr3t-pass@github.com/org/repo.git', /password/],
    ['BOOTSTRAP_GIT_CREDENTIAL_SECRET', 'AKIAIOSFODNN7EXAMPLE', /AWS access key id/],
    ['BOOTSTRAP_TAG_KEY_SERVICE', '-----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaC1rZXktdjE', /private key/],
    ['BOOTSTRAP_SECRET_IDS', 'ghp_abcdefghijklmnopqrstuvwxyz0123456789', /access token/],
  ]
  for (const [name, value, what] of shapes) {
    const e = refusal({ ...base, [name]: value })
    t.equal(e.exitCode, 2, `${name}: ${value}`)
    t.match(e.message, what)
    t.notMatch(e.message, value, 'the value is not echoed')
  }
  // a user name alone in an ssh URL is not a credential
  t.doesNotThrow(() => render({ ...base, BOOTSTRAP_REPOSITORY: 'ssh://git@github.com/org/repo.git' }))
})

// quotes, $(), backticks, backslashes, globs, comment and heredoc look-alikes, UTF-8
const hostile = [
  `it's "quoted" \`id\` $(touch /tmp/pwned) \${HOME} $HOME \\ \\\\ \\' #x ; rm -rf / & | > < * ? ~ é 日本`,
  "'",
  '"',
  '\\',
  '$',
  'AGENT_ENV_EOF',
  "'; touch /tmp/pwned; echo '",
  '"$(touch /tmp/pwned)"',
  '  spaces around  ',
]

t.test('hostile values: the script stays valid bash and agent.env reads them back byte-exact', async t => {
  // tag keys and the credential secret id are free text as far as the settings parser goes
  for (const v of hostile) {
    const r = render({ ...base, BOOTSTRAP_TAG_KEY_BRANCH: v, BOOTSTRAP_GIT_CREDENTIAL_SECRET: v })
    t.equal(bashSyntax(r.text).status, 0, `bash -n with ${JSON.stringify(v)}`)
    const back = parseAgentEnv(heredoc(r.text, 'AGENT_ENV_EOF'), 'agent.env')
    t.equal(back['BOOTSTRAP_TAG_KEY_BRANCH'], v, JSON.stringify(v))
    t.equal(back['BOOTSTRAP_GIT_CREDENTIAL_SECRET'], v)
  }
  // and in a template scalar: a URL may hold quotes and shell syntax in its query
  const url = "https://releases.example.com/a.tar.gz?x=it's&y=$(id)&z=`id`"
  const r = render({ ...base, 'artifact-url': url })
  t.match(r.text, `ARTIFACT_URL=${shellQuote(url)}\n`)
  t.equal(bashSyntax(r.text).status, 0)
  const echoed = spawnSync('bash', ['-c', `${r.text.split('\n').find(l => l.startsWith('ARTIFACT_URL='))}\nprintf %s "$ARTIFACT_URL"`], { encoding: 'utf8' })
  t.equal(echoed.stdout, url, 'bash reads the URL back unchanged')
})

t.test('line breaks cannot be written into agent.env or the script: refused, named', async t => {
  for (const v of ['a\nb', 'a\rb', 'x\n[Service]\nExecStartPre=/bin/sh -c id', 'nul\0']) {
    const e = refusal({ ...base, BOOTSTRAP_TAG_KEY_SERVICE: v })
    t.equal(e.exitCode, 2)
    t.match(e.message, /--param BOOTSTRAP_TAG_KEY_SERVICE = .* contains a line break or NUL/)
  }
  t.match(refusal({ ...base, 'artifact-url': 'https://a.example.com/x\ny' }).message, /artifact-url .* contains a line break/)
})

t.test('shellQuote: bash reads any string back unchanged (this test runs bash once)', async t => {
  const alphabet = fc.constantFrom(..."'\"`$\\()!#;&|<>*?~{}[] \t\nxé日😀")
  const samples = [...hostile, 'line1\nline2\n', '', ...fc.sample(fc.string({ unit: alphabet, maxLength: 30 }), 300)]
  const r = spawnSync('bash', ['-c', `printf '%s\\0' ${samples.map(shellQuote).join(' ')}`], { encoding: 'utf8' })
  t.equal(r.status, 0, r.stderr)
  t.same(r.stdout.split('\0').slice(0, -1), samples)
})

t.test('agentEnvValue: config/agent-env.ts reads every single-line value back byte-exact', async t => {
  fc.assert(fc.property(
    fc.string({ unit: 'binary', minLength: 1 }).filter(v => !/[\r\n\0]/.test(v)),
    v => parseAgentEnv(`K=${agentEnvValue(v)}`, 'agent.env')['K'] === v,
  ), { numRuns: 2000 })
  t.equal(agentEnvValue("it's"), `"it's"`)
  t.equal(agentEnvValue('a"b\\c$d`e'), `'a"b\\c$d\`e'`, 'single quotes need no escapes at all')
  t.equal(agentEnvValue(`'"\\$\``), `"'\\"\\\\\\$\\\`"`)
  t.match(formatAgentEnv({ B: '2', A: '1' }), /^# bootstrap-agent agent\.env[^\n]*\nA='1'\nB='2'$/, 'sorted, under a header')
})

t.test('the unit: comments and blank lines dropped, heredoc delimiter refused', async t => {
  t.equal(compactUnit(unit).split('\n').slice(1).join('\n'), '[Unit]\nDescription=test unit\n[Service]\nType=oneshot\nExecStart=/opt/bootstrap-agent/current/bin/bootstrap-agent run --reason boot')
  const body = heredoc(render(base).text, 'UNIT_EOF')
  t.match(body, /^# bootstrap-agent.service, installed by user-data/)
  t.notMatch(body, 'a comment')
  const e = refusal(base, { unit: `${unit}UNIT_EOF\nExecStartPost=/bin/sh -c id\n` })
  t.equal(e.exitCode, 2)
  t.match(e.message, /the systemd unit contains a line "UNIT_EOF"/)
  t.match(refusal(base, { unit: `${unit}X=\0\n` }).message, /the systemd unit contains a NUL byte/)
})

t.test('the watch unit: embedded compacted, installed and enabled beside the agent unit', async t => {
  const r = render(base)
  const body = heredoc(r.text, 'WATCH_UNIT_EOF')
  t.match(body, /^# bootstrap-agent-watch.service, installed by user-data; the commented original is systemd\/bootstrap-agent-watch.service/)
  t.match(body, /^ExecStart=\/opt\/bootstrap-agent\/current\/bin\/bootstrap-agent watch$/m)
  t.notMatch(body, 'the watch', 'comments dropped')
  t.match(r.text, /^install_unit "\$WATCH_UNIT" <<'WATCH_UNIT_EOF'$/m)
  t.match(r.text, /^systemctl enable --now --no-block bootstrap-agent.service bootstrap-agent-watch.service$/m)
  t.match(refusal(base, { watchUnit: `${watchUnit}WATCH_UNIT_EOF\n` }).message, /the watch systemd unit contains a line "WATCH_UNIT_EOF"/)
})

t.test('size: over 16 KB is refused with the size', async t => {
  const big = `${unit}${Array.from({ length: 400 }, (_, i) => `Environment=PADDING_${i}=${'x'.repeat(30)}`).join('\n')}\n`
  const e = refusal(base, { unit: big })
  t.equal(e.code, 'USER_DATA_TOO_LARGE')
  t.equal(e.exitCode, 2)
  t.match(e.message, new RegExp(`the rendered user-data is \\d+ bytes: EC2 takes at most ${USER_DATA_MAX_BYTES}`))
  const bytes = Number(/is (\d+) bytes/.exec(e.message)?.[1])
  t.ok(bytes > USER_DATA_MAX_BYTES)
})

t.test('the template: unknown placeholders and a missing #! are refused', async t => {
  t.match(refusal(base, { templateText: '#!/bin/bash\necho {{artifact_urll}}\n' }).message, /template bootstrap uses an unknown placeholder \{\{artifact_urll\}\}/)
  t.match(refusal(base, { templateText: 'echo hi\n' }).message, /does not start with #!/)
  // text inserted for a placeholder is not expanded again
  const r = render({ ...base, BOOTSTRAP_TAG_KEY_SERVICE: '{{unit}}' }, { templateText: '#!/bin/bash\n{{agent_env}}\n' })
  t.match(r.text, "BOOTSTRAP_TAG_KEY_SERVICE='{{unit}}'")
})

t.test('--help lists every parameter', async t => {
  const help = paramHelp()
  for (const name of ['artifact-url', 'artifact-sha256', 'region', 'node-install', 'node-major', 'node-url', 'node-sha256', 'BOOTSTRAP_LOG_LEVEL', 'AWS_ENDPOINT_URL']) t.match(help, name)
  t.match(help, /artifact-url +\(required\)/)
})

t.test('--param flags', async t => {
  t.same(parseParamFlags(['region=eu-west-1', 'BOOTSTRAP_BRANCH_MAP=a=b,c=d', 'x=']), { region: 'eu-west-1', BOOTSTRAP_BRANCH_MAP: 'a=b,c=d', x: '' })
  t.match(thrown(() => parseParamFlags(['region'])), { exitCode: 2, message: /--param "region" is not valid: expected key=value/ })
  t.match(thrown(() => parseParamFlags(['=x'])), { exitCode: 2 })
  t.match(thrown(() => parseParamFlags(['region=a', 'region=b'])), { exitCode: 2, message: /--param region is given twice/ })
})
