/**
 * PM2 runs non-Node services (and `npm run <script>`) through this wrapper: node has already
 * loaded the env file via `--import env-preload`, so the program started here inherits the
 * secrets in its environment, never on its command line. Signals are forwarded so PM2's graceful
 * stop reaches the real program, and its exit code becomes ours.
 */
import { spawn } from 'node:child_process'

const [file, ...args] = process.argv.slice(2)
if (!file) {
  process.stderr.write('run-with-env: no program given\n')
  process.exit(64)
}
const child = spawn(file, args, { stdio: 'inherit', env: process.env })
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGUSR2'] as const) {
  process.on(sig, () => child.kill(sig))
}
child.on('error', e => {
  process.stderr.write(`run-with-env: could not start ${file}: ${e.message}\n`)
  process.exit(127)
})
child.on('exit', (code, signal) => {
  process.exit(code ?? (signal ? 128 + 15 : 1))
})
