#!/usr/bin/env node
// The long crash-consistency run (issue 5): the trials of test/integration/crash-consistency.ts
// with many more seeded random kill points. Not part of `npm test`.
//   node scripts/crash-long.mjs [N=300] [SEED]
// Builds the agent first; prints the seed (tap's output) so a failure can be replayed with
// CRASH_SEED=<seed> (and CRASH_SPAN_MS=<ms> to pin the random delays' range).
import { spawnSync } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const repo = join(dirname(fileURLToPath(import.meta.url)), '..')
const n = Number(process.argv[2] ?? 300)
if (!Number.isInteger(n) || n < 0) {
  process.stderr.write(`usage: node scripts/crash-long.mjs [random trials, default 300] [seed]\n  got "${process.argv[2]}"\n`)
  process.exit(2)
}
const seed = process.argv[3] ?? process.env.CRASH_SEED ?? String(Date.now() % 2 ** 31)

const build = spawnSync(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: repo, stdio: 'inherit' })
if (build.status !== 0) process.exit(1)

process.stdout.write(`crash-long: ${n} random trials plus the phase-boundary trials, CRASH_SEED=${seed}\n`)
const t0 = Date.now()
const r = spawnSync(join(repo, 'node_modules/.bin/tap'), [
  // off a TTY, plain TAP: every trial's name and the seed comments stay readable in a log file
  `--reporter=${process.stdout.isTTY ? 'terse' : 'tap'}`, '--disable-coverage', '--timeout=0', 'test/integration/crash-consistency.ts',
], { cwd: repo, stdio: 'inherit', env: { ...process.env, CRASH_TRIALS: String(n), CRASH_SEED: seed } })
process.stdout.write(`crash-long: ${r.status === 0 ? 'passed' : 'FAILED'} in ${Math.round((Date.now() - t0) / 1000)} s (CRASH_SEED=${seed})\n`)
process.exit(r.status ?? 1)
