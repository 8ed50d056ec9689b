/**
 * One lazily loaded SDK module and client, shared by the methods of an api object: a command that
 * never calls the service never loads its client (~tens of ms and MB each, bench/README.md).
 */
export const lazy = <T>(load: () => Promise<T>): (() => Promise<T>) => {
  let loaded: Promise<T> | undefined
  return () => (loaded ??= load())
}
