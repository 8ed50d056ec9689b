#!/usr/bin/env node
// `npm test`: build the agent, install what the tests need (idempotently, cached under .cache/),
// run every tap test, and end with the line CI reads: "N passed, N failed[, N skipped]".
import { spawnSync } from 'node:child_process'
import { mkdirSync, readFileSync, existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const repo = join(dirname(fileURLToPath(import.meta.url)), '..')
const cache = join(repo, '.cache')
mkdirSync(cache, { recursive: true })

const step = (what, file, args, opts = {}) => {
  process.stdout.write(`\n# ${what}\n`)
  const r = spawnSync(file, args, { cwd: repo, stdio: 'inherit', ...opts })
  if (r.status !== 0) {
    process.stdout.write(`\n${what} failed (exit ${r.status ?? r.signal}); no test ran\n0 passed, 1 failed\n`)
    process.exit(1)
  }
}

step('build (tsc)', process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'])
// tap strips the tests' types without checking them: a fake that no longer fits its seam would pass
step('type-check the tests (tsc)', process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.test.json'])
step('test prerequisites', process.execPath, [join(repo, 'scripts/test-setup.mjs')])

const tapOut = join(cache, 'tap-output.tap')
// off a TTY (CI) the terse reporter prints failures in full and only a summary for the rest
const reporter = process.stdout.isTTY ? [] : ['--reporter=terse']
const r = spawnSync(join(repo, 'node_modules/.bin/tap'), [...reporter, '--output-file', tapOut, ...process.argv.slice(2)], { cwd: repo, stdio: 'inherit' })

// tap's own final counts from the raw TAP stream: "# { total: 12, pass: 11, fail: 1, skip: 0 }"
let counts = { pass: 0, fail: 0, skip: 0, todo: 0 }
if (existsSync(tapOut)) {
  const lines = readFileSync(tapOut, 'utf8').split('\n').filter(l => l.startsWith('# {'))
  const last = lines[lines.length - 1]
  if (last) for (const [, k, v] of last.matchAll(/(\w+): (\d+)/g)) counts[k] = Number(v)
}
const failed = counts.fail + (r.status !== 0 && counts.fail === 0 ? 1 : 0)
// the failures again, one line each, just above the count: the end of a long log names them
if (existsSync(tapOut) && failed) {
  const paths = failurePaths(readFileSync(tapOut, 'utf8'))
  if (paths.length) process.stdout.write(`\nfailed:\n${paths.slice(0, 30).map(p => `  ${p.length > 240 ? `${p.slice(0, 240)}...` : p}`).join('\n')}${paths.length > 30 ? `\n  (${paths.length - 30} more)` : ''}\n`)
}
const skipped = counts.skip + counts.todo
process.stdout.write(`\n${counts.pass} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`)
process.exit(r.status === 0 && failed === 0 ? 0 : 1)

/** "file > subtest > assertion" of every failure in a TAP stream; a subtest that failed because its children did is left out */
function failurePaths(tap) {
  const open = [] // [indent, name] of the subtests whose result line is still to come
  const all = []
  for (const line of tap.split('\n')) {
    const m = /^( *)(?:# Subtest: (.*)|not ok \d+ - (.*?)(?: # .*)?|(?:not )?ok \d+.*)$/.exec(line)
    if (!m) continue
    const indent = m[1].length
    const outer = open.filter(([i]) => i < indent).map(([, n]) => n)
    if (m[3] !== undefined) all.push([...outer, m[3]].join(' > '))
    while (open.length && open[open.length - 1][0] >= indent) open.pop()
    if (m[2] !== undefined) open.push([indent, m[2]])
  }
  return all.filter(p => !all.some(q => q.startsWith(`${p} > `)))
}
