import t from 'tap'
import { helpFor, parseCli } from '../../../agent/src/config/cli-args.js'
import { thrown } from '../../helpers/thrown.js'

t.test('commands, flags and tags', async t => {
  const a = parseCli(['run', '--local', '--tag', 'Service=a', '--tag', 'Environment=stage', '--keep-releases', '5', '--json'])
  t.equal(a.command, 'run')
  t.same(a.tags, ['Service=a', 'Environment=stage'])
  t.equal(a.flags['keep-releases'], '5')
  t.equal(a.flags['local'], true)
  t.equal(parseCli([]).command, 'help')
  t.equal(parseCli(['--version']).command, 'version')
  t.equal(parseCli(['plan', '--help']).help, true)
})

t.test('mistakes are exit-2 errors that say what to do', async t => {
  t.match(thrown(() => parseCli(['deploy'])), { exitCode: 2, message: /unknown command "deploy": expected one of run, plan/ })
  t.match(thrown(() => parseCli(['run', '--keep-release', '3'])), { exitCode: 2, code: 'CLI_INVALID', remedy: /bootstrap-agent run --help/ })
  t.match(thrown(() => parseCli(['run', 'extra'])), { exitCode: 2 })
})

t.test('help lists every settings flag with its variable', async t => {
  t.match(helpFor('run'), /--git-credential-secret\s+BOOTSTRAP_GIT_CREDENTIAL_SECRET/)
  t.match(helpFor('help'), /Exit codes: 0 success, 1 failed/)
})

t.test('watch: a command with the settings flags and its own help', async t => {
  const a = parseCli(['watch', '--watch-interval', '2', '--pre-stop-timeout', '40', '--imds-token-ttl', '60', '--json'])
  t.equal(a.command, 'watch')
  t.same(a.flags, { 'watch-interval': '2', 'pre-stop-timeout': '40', 'imds-token-ttl': '60', json: true })
  t.match(helpFor('watch'), /Usage: bootstrap-agent watch[^]*Terminated \/ Warmed:Terminated[^]*spot instance-action[^]*Warmed:\* -> InService/)
  t.match(helpFor('help'), /watch\s+long-running/)
  t.match(helpFor('run'), /--watch-interval\s+BOOTSTRAP_WATCH_INTERVAL/)
  t.match(helpFor('run'), /--reason boot\|ssm\|manual\|warm-pool/)
})
