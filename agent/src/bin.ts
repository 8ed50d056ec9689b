#!/usr/bin/env node
/**
 * The one place that exits the process. Exiting explicitly, rather than letting the event loop
 * drain, matters: an SDK keep-alive socket (an IMDS or VPC endpoint that keeps connections open)
 * would hold the run open for seconds after its work is done. The agent's log lines are written
 * synchronously; what a command wrote to stdout may still be queued when stdout is a pipe that
 * is full, so both streams are flushed first.
 *
 * `--version` and the top-level help are answered before the agent itself is imported: loading
 * it (the AWS SDK clients, pino, ajv) costs ~0.3 s and ~45 MB, which user-data's install check
 * and an operator's `--help` would otherwise pay for one line of output. The release bundle is
 * split at these dynamic imports (scripts/package.mjs), so the skipped code is not even parsed.
 */
const argv = process.argv.slice(2)
const first = argv.length <= 1 ? argv[0] : 'a command'

if (first === '--version' || first === '-v' || first === 'version') {
  const { VERSION } = await import('./version.js')
  process.stdout.write(`${VERSION}\n`)
  process.exit(0)
}
if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
  const { helpFor } = await import('./config/cli-args.js')
  process.stdout.write(`${helpFor('help')}\n`)
  process.exit(0)
}

const { main } = await import('./main.js')
const code = await main(argv, process.env, { stdout: process.stdout, stderr: process.stderr })
// a pipe holds 64 KiB before writes queue in the process: `history --json` over thousands of runs
// lost all but its first 64 KiB at exit. An empty write's callback runs once every write before
// it was handed to the pipe.
const flushed = (s: NodeJS.WriteStream) => new Promise<void>(resolve => s.write('', () => resolve()))
await Promise.all([flushed(process.stdout), flushed(process.stderr)])
process.exit(code)
