#!/usr/bin/env node
// Installs and checks what the test suite needs beyond npm packages, idempotently. A missing
// prerequisite that cannot be installed fails here with a message that says why, rather than
// as a confusing test failure later.
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const have = cmd => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
const isRoot = process.getuid?.() === 0

const aptInstall = pkgs => {
  if (!isRoot) throw new Error(`missing ${pkgs.join(', ')}: install them (apt-get install ${pkgs.join(' ')})`)
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit' })
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
}

const need = []
if (!have('git') || !existsSync('/usr/lib/git-core/git-http-backend')) need.push('git')
if (isRoot && !have('useradd')) need.push('passwd')
// the deploy-key tests run a real sshd on loopback (test/helpers/ssh-git-server.ts)
if (!existsSync('/usr/sbin/sshd')) need.push('openssh-server')
if (!have('ssh') || !have('ssh-keygen')) need.push('openssh-client')
// the rendered user-data is linted with Debian's shellcheck and run end to end; it downloads the
// release artifact with curl
if (!have('shellcheck')) need.push('shellcheck')
if (!have('curl')) need.push('curl')
// the shipped units are checked with `systemd-analyze verify` (test/integration/systemd.ts); the
// package installs fine where systemd is not PID 1, and nothing here starts it
if (!have('systemd-analyze')) need.push('systemd')
// the boot tier (test/boot/) boots a Debian rootfs with systemd as PID 1 under systemd-nspawn;
// scripts/boot-setup.mjs builds the rootfs with debootstrap and the Node tarball with xz
if (!have('systemd-nspawn')) need.push('systemd-container')
if (!have('debootstrap')) need.push('debootstrap')
if (!have('xz')) need.push('xz-utils')
if (need.length) aptInstall(need)
console.log('test prerequisites ok: git', execFileSync('git', ['--version']).toString().trim())
// `sshd -V` does not exist; an unknown option makes sshd print its usage with the version
console.log('test prerequisites ok: sshd', spawnSync('/usr/sbin/sshd', ['-V'], { encoding: 'utf8' }).stderr.split('\n')[0]?.trim())
console.log('test prerequisites ok: shellcheck', execFileSync('shellcheck', ['--version']).toString().match(/version: (\S+)/)?.[1])
console.log('test prerequisites ok:', execFileSync('systemd-analyze', ['--version']).toString().split('\n')[0]?.trim())

// moto server (the AWS APIs of testing.md), pinned, in a venv under .cache/. The stamp holds the
// version pip installed; it is written last, so an interrupted install is redone next time.
const MOTO_VERSION = '5.2.5'
const venv = join(dirname(fileURLToPath(import.meta.url)), '../.cache/moto-venv')
const stamp = join(venv, '.moto-version')
const motoServer = join(venv, 'bin/moto_server')
const stamped = existsSync(stamp) ? readFileSync(stamp, 'utf8').trim() : ''

/** Runs quietly; on failure shows what the command printed, which is the useful part. */
const quiet = (file, args, env = process.env) => {
  const r = spawnSync(file, args, { encoding: 'utf8', env })
  if (r.status !== 0) throw new Error(`${file} ${args.join(' ')} failed (exit ${r.status ?? r.signal}):\n${r.stdout}${r.stderr}`)
}

const makeVenv = () => {
  try {
    quiet('python3', ['-m', 'venv', venv])
  } catch (err) {
    // Debian's python3 ships venv without ensurepip until python3-venv is installed
    if (!/ensurepip|python3-venv/.test(String(err))) throw err
    rmSync(venv, { recursive: true, force: true })
    aptInstall(['python3-venv'])
    quiet('/usr/bin/python3', ['-m', 'venv', venv])
  }
}

if (existsSync(motoServer) && stamped === MOTO_VERSION) {
  console.log(`test prerequisites ok: moto ${MOTO_VERSION} already in .cache/moto-venv`)
} else {
  if (!existsSync(join(venv, 'bin/python'))) makeVenv()
  // pip's own notices (a newer pip exists, the root-user warning) are noise here
  const pipEnv = { ...process.env, PIP_DISABLE_PIP_VERSION_CHECK: '1', PIP_ROOT_USER_ACTION: 'ignore' }
  quiet(join(venv, 'bin/pip'), ['install', '--quiet', `moto[server]==${MOTO_VERSION}`], pipEnv)
  writeFileSync(stamp, `${MOTO_VERSION}\n`)
  console.log(`test prerequisites ok: installed moto ${MOTO_VERSION}${stamped ? ` (was ${stamped})` : ''} into .cache/moto-venv`)
}

// the boot tier's rootfs and Node tarball, cached under .cache/boot/
execFileSync(process.execPath, [join(dirname(fileURLToPath(import.meta.url)), 'boot-setup.mjs')], { stdio: 'inherit' })
