/**
 * One leak scan for every integration test: search for secret *values* in every file under the
 * sandbox root except the env file (logs, state.json, dump.pm2, .git/config, releases...), in
 * `pm2 jlist` output, in sampled process command lines, and in the CLI's own output.
 */
import { readdirSync, readFileSync, lstatSync } from 'node:fs'
import { join } from 'node:path'
import { pm2, type CliResult } from './sandbox.js'

export interface LeakSources {
  root: string
  /** files allowed to hold the values (the env file) */
  allow: string[]
  texts?: Record<string, string>
  cmdlines?: string[]
}

const walk = (dir: string, out: string[]): void => {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name)
    const st = lstatSync(p)
    if (st.isSymbolicLink()) continue
    if (st.isDirectory()) walk(p, out)
    else if (st.isFile() && st.size < 32 * 1024 * 1024) out.push(p)
  }
}

/** Every place a value was found: [] means no leak. */
export const findLeaks = (values: string[], s: LeakSources): string[] => {
  const found: string[] = []
  const files: string[] = []
  walk(s.root, files)
  for (const f of files) {
    if (s.allow.includes(f)) continue
    const text = readFileSync(f).toString('latin1')
    for (const v of values) if (text.includes(Buffer.from(v).toString('latin1'))) found.push(`${f} contains ${v.slice(0, 6)}…`)
  }
  for (const [name, text] of Object.entries(s.texts ?? {})) {
    for (const v of values) if (text.includes(v)) found.push(`${name} contains ${v.slice(0, 6)}…`)
  }
  for (const c of s.cmdlines ?? []) {
    for (const v of values) if (c.includes(v)) found.push(`a process command line contains ${v.slice(0, 6)}…: ${c.slice(0, 80)}`)
  }
  return found
}

/** The scan after one agent run: the root (env file allowed, and `alsoAllowed`: e.g. the logs of a
 * service that prints its own secret), the CLI's output, what PM2 reports (`jlist`, `env` of app
 * 0) and the command lines sampled while the run lasted. */
export const leaksAfterRun = (values: string[], root: string, envFile: string, r: CliResult, alsoAllowed: string[] = []): string[] =>
  findLeaks(values, {
    root,
    allow: [envFile, ...alsoAllowed],
    texts: { stdout: r.stdout, stderr: r.stderr, 'pm2 jlist': pm2(root, ['jlist']), 'pm2 env': pm2(root, ['env', '0']) },
    cmdlines: r.cmdlines,
  })
