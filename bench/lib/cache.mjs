// The release cache (bench/README.md, "Release cache"): for both fixtures, the API app and the
// React admin panel (a real vite build), per repetition, each on a fresh root (a new instance):
//   cold:     no cache: clone, npm ci (the warm offline cache), build, start, health
//   miss:     a cache prefix of its own, empty: the same from source, then publish after CONTINUE
//   hit:      the prefix `miss` filled: download, sha256, extract as the service user, start, health
//   baseline: bench/baseline.sh (clone, npm ci, build, pm2, health)
// `miss` always runs just before `hit` (it fills the cache); cold and the baseline trade places
// from one repetition to the next. Medians. Time to CONTINUE: from spawn to the `complete`
// phase's log line (miss against cold: what the cache adds before the instance goes InService);
// the publish phase and everything after CONTINUE (what the publishing instance spends later).
// Then the archive format on each fixture's release (bench/lib/archive-format.mjs).
import { spawnSync } from 'node:child_process'
import { realpathSync } from 'node:fs'
import { join } from 'node:path'
import { measureFormats } from './archive-format.mjs'
import { median } from './harness.mjs'

const BUCKET = 'bench-release-cache'
const KINDS = ['cold', 'miss', 'hit']

/**
 * o: { reps, moto, work, fixtures: { api, admin } (services of bench/run.mjs), runAgent, runBaseline,
 *      agentRoot, baselineRoot, freshAgentRoot, freshBaselineRoot, killPm2, expectBuild, say, ms }
 */
export const measureCache = async o => {
  await o.moto.createBucket(BUCKET)
  const out = {}
  for (const [fixture, svc] of Object.entries(o.fixtures)) {
    const runs = { cold: [], miss: [], hit: [], baseline: [] }
    const roots = Object.fromEntries(KINDS.map(k => [k, o.agentRoot(`cache-${fixture}-${k}`)]))
    const baseRoot = o.baselineRoot(`cache-${fixture}`)
    const killAll = () => {
      for (const k of KINDS) o.killPm2(roots[k], 'agent')
      o.killPm2(baseRoot, 'baseline')
    }
    let published
    for (let rep = 0; rep < o.reps; rep++) {
      const env = { BOOTSTRAP_RELEASE_CACHE: `s3://${BUCKET}/${fixture}-rep-${rep}` }
      const one = {
        cold: async () => runs.cold.push(await o.runAgent(o.freshAgentRoot(roots.cold), { svc })),
        miss: async () => {
          const r = await o.runAgent(o.freshAgentRoot(roots.miss), { svc, env })
          if (!/^miss: /.test(r.cache?.lookup ?? '') || !/^published /.test(r.cache?.published ?? '')) throw new Error(`cache ${fixture}: the miss run did not miss and publish: ${JSON.stringify(r.cache)}`)
          published = r.cache.published
          runs.miss.push(r)
        },
        hit: async () => {
          const r = await o.runAgent(o.freshAgentRoot(roots.hit), { svc, env })
          if (r.releaseFrom !== 'cache') throw new Error(`cache ${fixture}: the hit run came from ${r.releaseFrom}: ${JSON.stringify(r.cache)}`)
          runs.hit.push(r)
        },
        baseline: async () => runs.baseline.push(await o.runBaseline(o.freshBaselineRoot(baseRoot), svc)),
      }
      for (const k of rep % 2 ? ['baseline', 'miss', 'hit', 'cold'] : ['cold', 'miss', 'hit', 'baseline']) {
        killAll()
        await one[k]()
        await o.expectBuild(k === 'baseline' ? svc.basePort : svc.port, svc.build, `cache ${fixture} ${k}`, svc.kind)
      }
      const last = k => o.ms(runs[k].at(-1).ms)
      o.say(`cache ${fixture} rep ${rep + 1}/${o.reps}: cold ${last('cold')}, miss ${last('miss')} (publish ${o.ms(runs.miss.at(-1).phases.publish)}), hit ${last('hit')}, baseline ${last('baseline')}`)
    }
    // the release as deployed, from the last miss run: its size, and the codecs on it
    const release = realpathSync(join(roots.miss, `srv/${svc.name}/current`))
    const unpackedBytes = Number(spawnSync('du', ['-sb', '--exclude=.git', release], { encoding: 'utf8' }).stdout.split('\t')[0])
    const files = Number(spawnSync('sh', ['-c', `find "${release}" -path "${release}/.git" -prune -o -type f -print | wc -l`], { encoding: 'utf8' }).stdout.trim())
    const [, archiveBytes, entries] = /\((\d+) bytes, (\d+) entries\)/.exec(published ?? '') ?? []
    const formats = await measureFormats(release)
    killAll()
    const med = k => median(runs[k].map(r => r.ms))
    const medOf = (k, f) => median(runs[k].map(f))
    out[fixture] = {
      ms: { cold: med('cold'), miss: med('miss'), hit: med('hit'), baseline: med('baseline') },
      hitVsCold: med('hit') / med('cold'),
      coldVsBaseline: med('cold') / med('baseline'),
      hitVsBaseline: med('hit') / med('baseline'),
      toContinueMs: { cold: medOf('cold', r => r.toContinueMs), miss: medOf('miss', r => r.toContinueMs), hit: medOf('hit', r => r.toContinueMs) },
      missVsColdToContinue: medOf('miss', r => r.toContinueMs) / medOf('cold', r => r.toContinueMs),
      publishPhaseMs: medOf('miss', r => r.phases.publish),
      afterContinueMs: { cold: medOf('cold', r => r.afterContinueMs), miss: medOf('miss', r => r.afterContinueMs) },
      phasesMs: Object.fromEntries(KINDS.map(k => [k, Object.fromEntries(Object.keys(runs[k][0].phases).map(p => [p, medOf(k, r => r.phases[p])]))])),
      baselineStepsMs: Object.fromEntries(Object.keys(runs.baseline[0].steps).map(s => [s, medOf('baseline', r => r.steps[s])])),
      peakRssMaxMb: Math.max(...KINDS.flatMap(k => runs[k].map(r => r.peakRssMb ?? 0))),
      peakRssMb: Object.fromEntries(KINDS.map(k => [k, Math.max(...runs[k].map(r => r.peakRssMb ?? 0))])),
      archive: { bytes: Number(archiveBytes), entries: Number(entries), releaseBytes: unpackedBytes, releaseFiles: files },
      formats,
      samples: Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, v.map(r => Math.round(r.ms))])),
    }
  }
  return out
}

const MiB = b => `${(b / 1048576).toFixed(1)} MiB`
const TARGET = { admin: 0.2, api: 0.5 }

export const cacheRows = (c, { ms, x, yes }) => {
  const rows = []
  const row = (metric, agent, baseline, ratio, target, met) => rows.push({ metric, agent, baseline, ratio, target, met })
  for (const [fixture, f] of Object.entries(c)) {
    row(`C ${fixture}: cold boot from source`, ms(f.ms.cold), ms(f.ms.baseline), x(f.coldVsBaseline), '', '')
    row(`C ${fixture}: cache-hit boot vs cold boot`, ms(f.ms.hit), `cold ${ms(f.ms.cold)}`, x(f.hitVsCold), `<= ${TARGET[fixture]}x`, yes(f.hitVsCold <= TARGET[fixture]))
    row(`C ${fixture}: cache-hit boot vs bash baseline`, ms(f.ms.hit), ms(f.ms.baseline), x(f.hitVsBaseline), '', '')
    row(`C ${fixture}: miss, time to CONTINUE vs cold`, ms(f.toContinueMs.miss), `cold ${ms(f.toContinueMs.cold)}`, x(f.missVsColdToContinue), 'adds nothing', yes(f.missVsColdToContinue <= 1.05))
    row(`C ${fixture}: publishing, after CONTINUE`, `${ms(f.publishPhaseMs)} (all after: ${ms(f.afterContinueMs.miss)})`, `cold: ${ms(f.afterContinueMs.cold)}`, '', '', '')
    row(`C ${fixture}: archive (gzip -6)`, MiB(f.archive.bytes), `release ${MiB(f.archive.releaseBytes)}, ${f.archive.releaseFiles} files`, '', '', '')
    row(`C ${fixture}: agent peak RSS (cold / miss / hit)`, `${f.peakRssMb.cold.toFixed(1)} / ${f.peakRssMb.miss.toFixed(1)} / ${f.peakRssMb.hit.toFixed(1)} MB`, '', '', '<= 100 MB', yes(f.peakRssMaxMb <= 100))
    for (const [codec, m] of Object.entries(f.formats.codecs)) {
      row(`C ${fixture}: format ${codec} (size; compress / decompress)`, MiB(m.bytes), `${ms(m.compressMs)} / ${ms(m.decompressMs)}`, '', '', '')
    }
  }
  return rows
}
