#!/usr/bin/env node
// `npm run package`: the release artifact user-data installs, self-contained so an instance needs
// no registry access: .cache/release/bootstrap-agent-<version>.tar.gz and its .sha256
// (sha256sum format). Layout of the tarball:
//
//   bootstrap-agent/bin/bootstrap-agent    sh launcher: node ../dist/agent.mjs "$@"
//   bootstrap-agent/dist/agent.mjs         the entry; with its chunks beside it (dist/*-<hash>.mjs)
//                                          the agent and every npm dependency but PM2, ESM
//   bootstrap-agent/dist/env-preload.js    loaded by path into every service (secrets/agent-files.ts),
//   bootstrap-agent/dist/run-with-env.js   so separate self-contained entry points beside the bundle
//   bootstrap-agent/dist/archive-worker.js the release cache's pack/unpack, run as the service user
//                                          (releases/archive-process.ts finds it beside the bundle)
//   bootstrap-agent/node_modules/pm2/...   PM2 and its production dependencies (PM2 forks its own
//                                          daemon from its files, so it cannot be bundled); pm2/cli.ts
//                                          finds it with require.resolve from dist/
//   bootstrap-agent/package.json           version (read by --version), "type": "module"
//   bootstrap-agent/schema/                the manifest's JSON Schema
//   bootstrap-agent/user-data/templates/, systemd/   what render-user-data embeds
//
// PM2's tree is copied from this checkout's node_modules (what `npm ci` installed from the lockfile
// and what the tests run against), after checking each package against package-lock.json: the
// artifact carries exactly the tested versions and building it needs no network.
//
// --reuse: do nothing when the artifact exists and its inputs (sources, lockfile, this script)
// are unchanged, so tests can call this cheaply.
import { build } from 'esbuild'
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join, posix, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'

const repo = join(dirname(fileURLToPath(import.meta.url)), '..')
const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8'))
const lock = JSON.parse(readFileSync(join(repo, 'package-lock.json'), 'utf8'))
const outDir = join(repo, '.cache/release')
const base = `bootstrap-agent-${pkg.version}`
const tarball = join(outDir, `${base}.tar.gz`)
const stampFile = join(outDir, `${base}.inputs`)

const fail = msg => {
  process.stderr.write(`package: ${msg}\n`)
  process.exit(1)
}

const filesUnder = dir =>
  readdirSync(dir, { withFileTypes: true })
    .flatMap(e => (e.isDirectory() ? filesUnder(join(dir, e.name)) : e.isFile() ? [join(dir, e.name)] : []))
    .sort()

/** Hash of everything that goes into the artifact, for --reuse. */
const inputsHash = () => {
  const h = createHash('sha256')
  const dirs = ['agent/src', 'schema', 'user-data/templates', 'systemd'].map(d => join(repo, d))
  const files = [...dirs.flatMap(filesUnder), join(repo, 'package.json'), join(repo, 'package-lock.json'), fileURLToPath(import.meta.url)]
  for (const f of files) h.update(`${relative(repo, f)}\0`).update(readFileSync(f)).update('\0')
  return h.digest('hex')
}

const inputs = inputsHash()
if (process.argv.includes('--reuse') && existsSync(tarball) && existsSync(`${tarball}.sha256`) && existsSync(stampFile) && readFileSync(stampFile, 'utf8').trim() === inputs) {
  console.log(`package: ${relative(repo, tarball)} is up to date`)
  process.exit(0)
}

// a stage of its own and renames into place: two builds at once (parallel test files) do not
// trip over each other, and the same inputs give the same bytes whichever finishes last
mkdirSync(outDir, { recursive: true })
const work = mkdtempSync(join(outDir, 'stage-'))
process.on('exit', () => rmSync(work, { recursive: true, force: true }))
const stage = join(work, 'bootstrap-agent')
mkdirSync(join(stage, 'bin'), { recursive: true })

// -- the bundle -----------------------------------------------------------------------------
const common = { bundle: true, platform: 'node', target: 'node20', format: 'esm', logLevel: 'warning', legalComments: 'eof' }
await build({
  ...common,
  entryPoints: [{ in: join(repo, 'agent/src/bin.ts'), out: 'agent' }],
  outdir: join(stage, 'dist'),
  outExtension: { '.js': '.mjs' },
  // split at bin.ts's dynamic imports: `--version` and `--help` load a few KB, not the agent's
  // 5 MB (measured: --version 324 -> ~45 ms, 85 -> ~40 MB). The chunks sit beside agent.mjs, not
  // in a subdirectory: secrets/agent-files.ts finds env-preload.js next to the module that asks, and
  // version.ts reads ../package.json. Names carry a content hash, so the same inputs give the
  // same files (the tarball stays reproducible).
  splitting: true,
  chunkNames: '[name]-[hash]',
  // the ES module builds of dependencies that publish both (the AWS SDK's dist-es, AWS's own
  // advice for bundling it): esbuild can drop the commands and models the agent never calls,
  // which CommonJS builds keep. Measured: 5.25 -> 4.34 MB in all, loading a `run`'s code
  // 338 -> 263 ms CPU, 80 -> 75 MB (`status`, 6 alternating reps). Both builds come from the
  // same sources; no package ends up in the bundle twice (checked with esbuild's metafile).
  mainFields: ['module', 'main'],
  // not minified: on a box where a boot failed, a stack trace then names real functions and lines
  // of a readable file (each module is marked with its source path); minifying saves ~0.1 MiB of
  // the gzipped tarball and would need a source map three times the bundle's size

  // CommonJS dependencies (ajv, simple-git, the AWS SDK's) call require() for Node builtins;
  // without a real require in scope esbuild's shim throws "Dynamic require is not supported"
  banner: { js: "import { createRequire as __bootstrapCreateRequire } from 'node:module'; const require = __bootstrapCreateRequire(import.meta.url);" },
})
await build({
  ...common,
  // named outputs: from two source folders esbuild would otherwise recreate them under dist/
  entryPoints: [
    { in: join(repo, 'agent/src/secrets/env-preload.ts'), out: 'env-preload' },
    { in: join(repo, 'agent/src/secrets/run-with-env.ts'), out: 'run-with-env' },
    { in: join(repo, 'agent/src/releases/archive-worker.ts'), out: 'archive-worker' },
  ],
  outdir: join(stage, 'dist'),
})

writeFileSync(join(stage, 'package.json'), `${JSON.stringify({
  name: 'bootstrap-agent',
  version: pkg.version,
  description: pkg.description,
  license: pkg.license,
  private: true,
  // env-preload.js and run-with-env.js are ES modules
  type: 'module',
  engines: pkg.engines,
  bin: { 'bootstrap-agent': 'bin/bootstrap-agent' },
}, null, 2)}\n`)

// readlink -f: the launcher is usually reached through the `current` symlink or /usr/local/bin;
// ${self%/*} rather than $(dirname ...): one process less before node starts.
// No V8 flags here on purpose: any flag that changes V8's configuration (measured:
// --max-semi-space-size=1, --no-opt) makes V8 reject the code cache Node ships for its own
// modules, and recompiling node:http, crypto, stream, http2... cost 50-90 ms of every start
// (13-29 ms with the cache; CPU profiles of `status`) for 6-12 MB less peak RSS.
writeFileSync(join(stage, 'bin/bootstrap-agent'), `#!/bin/sh
self=$(readlink -f "$0")
exec node "\${self%/*}/../dist/agent.mjs" "$@"
`)
chmodSync(join(stage, 'bin/bootstrap-agent'), 0o755)
cpSync(join(repo, 'schema'), join(stage, 'schema'), { recursive: true })
// render-user-data works from an installed agent too: it finds these above its dist/
for (const d of ['user-data/templates', 'systemd']) cpSync(join(repo, d), join(stage, d), { recursive: true })

// -- PM2 and its production dependencies ----------------------------------------------------
/** Node's resolution from package directory `from` (repo-relative, posix) for `name`. */
const resolveFrom = (from, name) => {
  for (let d = from; ; d = posix.dirname(d)) {
    const candidate = d === '.' ? `node_modules/${name}` : `${d}/node_modules/${name}`
    if (existsSync(join(repo, candidate, 'package.json'))) return candidate
    if (d === '.') return undefined
  }
}

const tree = new Set()
const visit = rel => {
  if (tree.has(rel)) return
  tree.add(rel)
  const manifest = JSON.parse(readFileSync(join(repo, rel, 'package.json'), 'utf8'))
  const locked = lock.packages[rel]
  if (!locked || locked.version !== manifest.version) {
    fail(`${rel} is ${manifest.version} but package-lock.json says ${locked?.version ?? 'nothing'}: run npm ci first`)
  }
  const optional = new Set(Object.keys(manifest.optionalDependencies ?? {}))
  for (const name of Object.keys({ ...manifest.dependencies, ...manifest.optionalDependencies })) {
    const dep = resolveFrom(rel, name)
    if (dep !== undefined) visit(dep)
    else if (!optional.has(name)) fail(`${rel} needs ${name}, which is not installed: run npm ci first`)
  }
}
visit('node_modules/pm2')

for (const rel of tree) {
  const from = join(repo, rel)
  // nested node_modules hold other packages of the tree (copied on their own) or nothing we need
  cpSync(from, join(stage, rel), { recursive: true, filter: src => !relative(from, src).split('/').includes('node_modules') })
}
const native = filesUnder(join(stage, 'node_modules')).filter(f => f.endsWith('.node'))
if (native.length) fail(`PM2's tree holds native addons, which would tie the artifact to this machine: ${native.map(f => relative(stage, f)).join(', ')}`)

// -- the tarball ----------------------------------------------------------------------------
// owner 0: extracting as root on an instance creates root-owned files. Sorted names and one
// timestamp (SOURCE_DATE_EPOCH, else the last commit's) make the same inputs give the same bytes.
const git = spawnSync('git', ['log', '-1', '--format=%ct'], { cwd: repo, encoding: 'utf8' })
const epoch = process.env.SOURCE_DATE_EPOCH || (git.status === 0 && git.stdout.trim()) || '0'
const tar = spawnSync('tar', ['-C', work, '--sort=name', '--owner=0', '--group=0', '--numeric-owner', `--mtime=@${epoch}`, '-cf', '-', 'bootstrap-agent'], { maxBuffer: 1 << 30 })
if (tar.status !== 0) fail(`tar failed: ${tar.stderr}`)
// zlib's gzip header carries no timestamp or file name
const gz = gzipSync(tar.stdout, { level: 9 })
const sha = createHash('sha256').update(gz).digest('hex')
const put = (file, data) => {
  writeFileSync(`${file}.${process.pid}.tmp`, data)
  renameSync(`${file}.${process.pid}.tmp`, file)
}
// the stamp last: --reuse trusts the tarball and checksum only once it matches
put(tarball, gz)
put(`${tarball}.sha256`, `${sha}  ${base}.tar.gz\n`)
put(stampFile, `${inputs}\n`)

const mib = n => `${(n / 1024 / 1024).toFixed(1)} MiB`
console.log(`package: ${relative(repo, tarball)}
  size      ${mib(statSync(tarball).size)} (${mib(tar.stdout.length)} unpacked, ${tree.size} packages in PM2's tree)
  sha256    ${sha}
  checksum  ${relative(repo, `${tarball}.sha256`)}`)
