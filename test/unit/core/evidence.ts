import t from 'tap'
import { EVIDENCE_MAX_BYTES, EVIDENCE_MAX_LINES, outputEvidence, tailText } from '../../../agent/src/core/evidence.js'

t.test('tailText: the last lines, empty ones left out, bounded in lines and bytes', async t => {
  t.equal(tailText('a\n\nb  \nc\n'), 'a\nb\nc')
  const many = Array.from({ length: 500 }, (_, i) => `line ${i}`).join('\n')
  const tail = tailText(many)
  t.equal(tail.split('\n').length, EVIDENCE_MAX_LINES)
  t.match(tail, /^line 400\n[^]*line 499$/)
  const wide = Array.from({ length: 50 }, (_, i) => `${i} ${'w'.repeat(1000)}`).join('\n')
  const cut = tailText(wide)
  t.ok(Buffer.byteLength(cut) <= EVIDENCE_MAX_BYTES)
  t.match(cut, /^\d+ w+\n/, 'cut at a line start')
  t.match(cut, /^49 w+$/m, 'the last line stays')
  const one = tailText(`${'é'.repeat(20_000)}end`, 10, 1001)
  t.ok(Buffer.byteLength(one) <= 1001, 'a single line longer than the budget keeps its end')
  t.match(one, /^é+end$/, 'no broken character at the cut')
})

t.test('outputEvidence: stderr then stdout, scrubbed, empty streams left out', async t => {
  t.same(outputEvidence('npm', 'npm ci', { stdout: '', stderr: 'npm error code E404\nnpm error 404 tok-123' }, s => s.replaceAll('tok-123', '[REDACTED]')), [
    { kind: 'npm', source: 'npm ci stderr', text: 'npm error code E404\nnpm error 404 [REDACTED]' },
  ])
  t.same(outputEvidence('build', 'build', { stdout: 'compiling\n', stderr: 'err\n' }).map(e => e.source), ['build stderr', 'build stdout'])
})
