#!/usr/bin/env node
/** The one place that exits the process. */
import { main } from './main.js'

process.exitCode = await main(process.argv.slice(2), process.env, { stdout: process.stdout, stderr: process.stderr })
