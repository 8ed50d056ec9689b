import t from 'tap'
import { isAgentError } from '../../../agent/src/core/errors.js'
import { isCleartextToRemoteHost, parseRemote, redactUrl } from '../../../agent/src/git/url.js'
import { thrown } from '../../helpers/thrown.js'

t.test('accepted URLs and what they mean', async (t) => {
  const cases: [string, string, string | undefined][] = [
    ['https://github.com/o/r.git', 'http', 'https://github.com/'],
    ['https://git.example.com:8443/o/r', 'http', 'https://git.example.com:8443/'],
    ['https://github.com:443/o/r.git', 'http', 'https://github.com/'],
    ['http://127.0.0.1:9000/r.git', 'http', 'http://127.0.0.1:9000/'],
    ['ssh://git@github.com/o/r.git', 'ssh', undefined],
    ['ssh://git@github.com:2222/o/r.git', 'ssh', undefined],
    ['git@github.com:o/r.git', 'ssh', undefined],
    ['github.com:o/r.git', 'ssh', undefined],
    ['file:///srv/repos/r.git', 'file', undefined],
  ]
  for (const [url, transport, origin] of cases) {
    t.same(parseRemote(url), { url, transport, ...(origin ? { origin } : {}) }, url)
  }
})

t.test('refused URLs: bad input (exit 2), the credential never echoed', async (t) => {
  const cases: [string, RegExp][] = [
    ['https://user:hunter2-secret@github.com/o/r.git', /credentials/],
    ['https://hunter2-secret@github.com/o/r.git', /credentials/],
    ['ssh://git:hunter2-secret@github.com/o/r.git', /credentials/],
    ['https://github.com/o/r.git?access_token=hunter2-secret', /query string/],
    ['https://github.com/o/r.git#hunter2-secret', /query string/],
    ['--upload-pack=touch /tmp/pwned', /not a URL/],
    ['-oProxyCommand=x:y', /not a URL/],
    ['https://github.com/o/r .git', /not a URL/],
    ['just-a-name', /not a URL/],
    ['https://', /not a URL/],
    ['ext::sh -c x', /not a URL/],
    ['ftp://example.com/r.git', /unsupported scheme "ftp:"/],
  ]
  for (const [url, why] of cases) {
    const e = thrown(() => parseRemote(url))
    if (!isAgentError(e)) {
      t.fail(`${url} was accepted`)
      continue
    }
    t.equal(e.code, 'GIT_URL_INVALID', url)
    t.equal(e.exitCode, 2)
    t.match(e.message, why)
    t.notMatch(e.message, 'hunter2')
    t.ok(e.remedy.length > 0)
  }
})

t.test('redactUrl masks userinfo and queries', async (t) => {
  t.equal(redactUrl('https://u:p@h.example/o/r.git'), 'https://***@h.example/o/r.git')
  t.equal(redactUrl('https://h.example/o/r.git?t=1'), 'https://h.example/o/r.git?***')
  t.equal(redactUrl('https://h.example/o/r.git'), 'https://h.example/o/r.git')
  t.equal(redactUrl('git@h.example:o/r.git'), 'git@h.example:o/r.git')
  t.equal(redactUrl('git@h.example:o/r.git?x'), 'git@h.example:o/r.git?***')
})

t.test('plain http carries a token only to loopback', async (t) => {
  t.equal(isCleartextToRemoteHost(parseRemote('http://git.example.com/r.git')), true)
  t.equal(isCleartextToRemoteHost(parseRemote('http://127.0.0.1:8080/r.git')), false)
  t.equal(isCleartextToRemoteHost(parseRemote('http://localhost/r.git')), false)
  t.equal(isCleartextToRemoteHost(parseRemote('http://[::1]:81/r.git')), false)
  t.equal(isCleartextToRemoteHost(parseRemote('https://git.example.com/r.git')), false)
  t.equal(isCleartextToRemoteHost(parseRemote('git@git.example.com:r.git')), false)
})
