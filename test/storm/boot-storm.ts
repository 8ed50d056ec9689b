/**
 * The boot storm (`npm run test:storm`, not part of `npm test`): 200 instances (STORM_INSTANCES)
 * booting at once against moto behind AWS's per-action rates (test/storm/aws-rates.ts). Every
 * instance must succeed, with the right secrets, exactly one CONTINUE, and no secret value in its
 * logs. The figures are printed and written to .cache/boot-storm.{json,md} for
 * docs/reliability.md ("Boot storm"). No timing is asserted.
 */
import t from 'tap'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { REPO } from '../helpers/sandbox.js'
import { AWS_RATES } from './aws-rates.js'
import { startFleet } from './fleet.js'
import { formatReport, stormReport, throttledOf, throttlingRetries } from './report.js'

const instances = Number(process.env['STORM_INSTANCES'] ?? 200)
if (!Number.isInteger(instances) || instances < 1) throw new Error(`STORM_INSTANCES = "${process.env['STORM_INSTANCES']}": expected a whole number above 0`)

// a ceiling for a loaded machine, not a timing assertion
t.setTimeout(900_000)

const fleet = await startFleet({ instances, rates: AWS_RATES, progress: line => t.comment(line) })
t.teardown(() => fleet.stop())

t.test(`${instances} instances boot at once against AWS's rates`, async t => {
  const run = await fleet.run()
  const report = stormReport(run, AWS_RATES, `npm run test:storm${instances === 200 ? '' : ` (STORM_INSTANCES=${instances})`}`)
  const md = formatReport(report)
  mkdirSync(join(REPO, '.cache'), { recursive: true })
  writeFileSync(join(REPO, '.cache/boot-storm.json'), `${JSON.stringify({ ...report, results: run.results }, null, 2)}\n`)
  writeFileSync(join(REPO, '.cache/boot-storm.md'), md)
  t.comment(`\n${md}`)

  t.same(report.failures, [], 'every instance identified, resolved and read its secrets')
  t.equal(report.successRate, 1, 'success rate 100%')
  t.equal(run.results.filter(i => !i.secretsRight).length, 0, 'every instance has exactly its service\'s secrets and parameters')
  const wrong = run.results.filter(i => (run.completions.get(i.instanceId) ?? []).join() !== 'CONTINUE').map(i => `${i.instanceId}: ${(run.completions.get(i.instanceId) ?? []).join() || 'none'}`)
  t.same(wrong, [], 'each waiting instance got exactly one CONTINUE')
  t.same(run.results.flatMap(i => i.leaks), [], 'no secret value in any log line')
  t.ok(throttledOf(run.counts) > 0, 'the storm was throttled (the rates bit)')
  // every throttled answer was followed by a retry the agent logged (DescribeTags' included)
  t.equal(throttlingRetries(report), throttledOf(run.counts), 'one logged retry per throttled answer')
})
