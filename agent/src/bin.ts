#!/usr/bin/env node
/**
 * The one place that exits the process. Exiting explicitly, rather than letting the event loop
 * drain, matters: an SDK keep-alive socket (an IMDS or VPC endpoint that keeps connections open)
 * would hold the run open for seconds after its work is done. Logs are written synchronously
 * (files, and pipes on Linux), so nothing is lost.
 */
import { main } from './main.js'

process.exit(await main(process.argv.slice(2), process.env, { stdout: process.stdout, stderr: process.stderr }))
