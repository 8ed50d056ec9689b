/**
 * Collects /proc/<pid>/cmdline of every process, every millisecond, until stopped: the proof
 * that no secret reached any process's argv. It runs in a worker thread so it never starves the
 * event loop the test's servers need. Also the peak RSS of one process (peakRss).
 */
import { readFileSync } from 'node:fs'
import { Worker } from 'node:worker_threads'

const SAMPLER = `
const { readdirSync, readFileSync } = require('node:fs')
const { workerData, parentPort } = require('node:worker_threads')
const stop = new Int32Array(workerData.stop)
const argvs = new Set()
let first = true
while (Atomics.load(stop, 0) === 0) {
  for (const pid of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(pid)) continue
    try { argvs.add(readFileSync('/proc/' + pid + '/cmdline', 'utf8').replaceAll('\\0', ' ')) } catch {}
  }
  if (first) { parentPort.postMessage('ready'); first = false }
  Atomics.wait(stop, 0, 0, 1)
}
parentPort.postMessage([...argvs])
`

/** `ready` resolves once the first sweep is done: start the process under test after it, or a
 * short-lived process can finish before the worker thread is even running. */
export const sampleCmdlines = (): { ready: Promise<void>; stop(): Promise<string[]> } => {
  const stop = new SharedArrayBuffer(4)
  const worker = new Worker(SAMPLER, { eval: true, workerData: { stop } })
  let onReady: () => void = () => {}
  const ready = new Promise<void>(resolve => (onReady = resolve))
  const result = new Promise<string[]>((resolve, reject) => {
    worker.on('message', (m: unknown) => {
      if (m === 'ready') onReady()
      else if (Array.isArray(m)) resolve(m.map(String))
    })
    worker.once('error', reject)
  })
  return {
    ready,
    async stop() {
      Atomics.store(new Int32Array(stop), 0, 1)
      return result
    },
  }
}

/** The peak RSS (VmHWM, the kernel's high-water mark) of one process, in MB: read every 20 ms
 * while it lives, the last value seen when it is gone. */
export const peakRss = (pid: number): { stop(): number } => {
  let peakKb = 0
  const read = () => {
    try {
      const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
      if (m?.[1]) peakKb = Math.max(peakKb, Number(m[1]))
    } catch {
      // exited
    }
  }
  read()
  const timer = setInterval(read, 20)
  return {
    stop() {
      clearInterval(timer)
      return Math.round(peakKb / 1024 * 10) / 10
    },
  }
}
