import { readFileSync } from 'node:fs'
import t from 'tap'
import { VERSION } from '../../agent/src/version.js'

t.test('the version is package.json\'s, found from the source tree as from dist/', async t => {
  const pkg: unknown = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'))
  t.match(pkg, { version: VERSION })
  t.match(VERSION, /^\d+\.\d+\.\d+/)
})
