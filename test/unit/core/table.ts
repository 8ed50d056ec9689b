import t from 'tap'
import { formatTable, printable, printableLines } from '../../../agent/src/core/table.js'

t.test('columns two spaces apart, the last one not padded', async t => {
  t.same(formatTable(['a', 'bb', 'c'], [['xxx', 'y', 'long text'], ['', '', '']]), ['  a    bb  c', '  xxx  y   long text', ''])
})

t.test('what came from an instance cannot drive the terminal', async t => {
  const hostile = 'ok\u001b]0;pwned\u0007\u009b2J\r\u202eevil\tend'
  t.equal(printable(hostile), 'ok\\u001b]0;pwned\\u0007\\u009b2J\\u000d\\u202eevil\tend')
  t.equal(printableLines('line 1\nline\u001b[31m 2'), 'line 1\nline\\u001b[31m 2', 'line breaks stay in a block')
  t.same(formatTable(['x'], [['a\nb']]), ['  x', '  a\\u000ab'], 'a cell stays on its line')
})
