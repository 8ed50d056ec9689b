// Coverage policy (docs/testing.md): a unit test covers the source file of the same name;
// integration tests run real processes and servers and are not coverage-mapped.
import { existsSync } from 'node:fs'

export default testFile => {
  const m = /^test\/unit\/(.+)\.ts$/.exec(testFile.replaceAll('\\', '/'))
  if (!m) return null
  const src = `agent/src/${m[1]}.ts`
  return existsSync(src) ? src : null
}
