/**
 * Garbage collection on demand, for the few places that stream hundreds of MB through the agent
 * (the release cache's download and upload). Node allocates a Buffer per chunk read from a socket
 * or a file; V8 frees them only when its young generation fills or their external memory passes a
 * threshold, so streaming 100 MB grew the agent's RSS by ~40 MB before a collection came round
 * (measured: a 110 MB HTTP download, 44 -> 86 MB). A minor collection every few MB keeps that
 * near 20 MB, for ~1 ms each. `--expose-gc` set at runtime, gc taken from a new context: what jest
 * does for --logHeapUsage. Only called while a transfer runs: no other code path changes.
 */
import { setFlagsFromString } from 'node:v8'
import { Transform, type TransformCallback } from 'node:stream'
import { runInNewContext } from 'node:vm'

type Gc = (options?: { type?: 'major' | 'minor'; flavor?: 'regular' | 'last-resort' }) => void

let gc: Gc | undefined

const collect = (options: Parameters<Gc>[0]): void => {
  if (!gc) {
    setFlagsFromString('--expose-gc')
    const fn: unknown = runInNewContext('gc')
    gc = typeof fn === 'function' ? (fn as Gc) : () => {}
  }
  gc(options)
}

/** Everything collectable collected, and V8's free pages given back to the system (its
 * "last resort" collection): before a transfer, the run's garbage no longer counts in the RSS
 * the transfer adds to (measured: 91 -> 76 MB after the modules of a run were loaded). */
export const releaseMemory = (): void => collect({ type: 'major', flavor: 'last-resort' })

/** A pass-through stream that collects the young generation every `bytes` passed through it:
 * the chunks it saw die young, and go with it. */
export const collectingEvery = (bytes: number): Transform => {
  let since = 0
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      since += chunk.length
      if (since >= bytes) {
        since = 0
        collect({ type: 'minor' })
      }
      cb(null, chunk)
    },
  })
}
