import t from 'tap'
import { createScrubber, MASK } from '../../../agent/src/secrets/redact.js'

t.test('masks known values wherever they appear', async t => {
  const s = createScrubber()
  s.add(['hunter2-secret', 'abc', 'hunter2-secret-longer'])
  t.equal(s.scrub('pw=hunter2-secret-longer;'), `pw=${MASK};`, 'longest value first')
  t.equal(s.scrub('x hunter2-secret y'), `x ${MASK} y`)
  t.equal(s.scrub('abc stays'), 'abc stays', 'values under 4 characters are not scrubbed')
  t.same(s.scrubDeep({ a: ['hunter2-secret'], b: { c: 'ok' }, n: 1 }), { a: [MASK], b: { c: 'ok' }, n: 1 })
  const e = s.scrubDeep(new Error('failed with hunter2-secret')) as unknown as { message: string }
  t.equal(e.message, `failed with ${MASK}`)
})

t.test('a multi-line value is masked line by line too', async t => {
  const s = createScrubber()
  const key = '-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END KEY-----'
  s.add([key])
  t.notMatch(s.scrub('git said: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC'), 'MIIEvQ')
})
