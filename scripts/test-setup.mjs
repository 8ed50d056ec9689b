#!/usr/bin/env node
// Installs and checks what the test suite needs beyond npm packages, idempotently. A missing
// prerequisite that cannot be installed fails here with a message that says why, rather than
// as a confusing test failure later.
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'

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
if (need.length) aptInstall(need)
console.log('test prerequisites ok: git', execFileSync('git', ['--version']).toString().trim())
