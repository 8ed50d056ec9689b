/** The error a function throws (sync or async), or a failure value when it does not throw. */
export const thrown = (fn: () => unknown): unknown => {
  try {
    fn()
  } catch (e) {
    return e
  }
  return new Error('expected the call to throw, it returned')
}

export const rejected = async (fn: () => Promise<unknown>): Promise<unknown> => {
  try {
    await fn()
  } catch (e) {
    return e
  }
  return new Error('expected the call to reject, it resolved')
}
