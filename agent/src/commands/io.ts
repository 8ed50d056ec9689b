/**
 * The streams a command writes to: the process's own in bin.ts, captured ones in tests. A module
 * of its own so commands need not import main.ts, which imports every command.
 */
export interface Io {
  stdout: NodeJS.WriteStream
  stderr: NodeJS.WriteStream
}
