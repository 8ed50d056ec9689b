/**
 * A plain text table for a terminal: left-aligned columns two spaces apart, the last column not
 * padded (it holds the long text: details, errors). Cells are made printable first: what the
 * operator commands show may come from an instance (a report in CloudWatch Logs, an SSM output),
 * and a control character there must not reach the terminal as one.
 */
const escape = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`

/** C0 (but tab), DEL and C1 controls, and the bidi overrides that reorder what is shown, escaped */
export const printable = (s: string): string =>
  s.replace(/[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, escape)

/** the same for a block of lines: line breaks stay */
export const printableLines = (s: string): string =>
  s.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, escape)

export const formatTable = (head: readonly string[], rows: readonly (readonly string[])[]): string[] => {
  const cells = rows.map(r => r.map(printable))
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map(b => (b[i] ?? '').length)))
  const line = (row: readonly string[]) => `  ${row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ')}`.trimEnd()
  return [line(head), ...cells.map(line)]
}
