// Every string pagefuse did not write itself — process names from /proc/<pid>/comm and cmdline, a VMM's
// `-name guest=…`, tenant ids, file names — is a stranger's, and pagefuse prints it as root. One module
// escapes it for each output: terminal text (status, top, audit, scan, tune's text log), HTML, and
// Prometheus label values. JSON needs nothing here: JSON.stringify keeps such strings exact and escapes
// control characters itself.
import stringWidth from 'string-width';

/**
 * For a terminal, as `ps` and `ls -b` do: C0 and C1 control characters and DEL become a backslash and three
 * octal digits (ESC → \033, BEL → \007, newline → \012), so no escape sequence reaches the terminal and
 * no name can start a new line of output; Unicode format and separator characters that reorder or break
 * what is shown (bidi overrides, zero-width joiners, U+2028) and lone surrogates become \u{hex}; a backslash
 * becomes \\ so the escaped text stays unambiguous. Everything else, wide characters included, is kept.
 */
export function escapeTerminal(s: string): string {
  // Fast path: most names are plain printable ASCII.
  if (!/[^\x20-\x5b\x5d-\x7e]/.test(s)) return s;
  let out = '';
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === '\\') out += '\\\\';
    else if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) out += `\\${cp.toString(8).padStart(3, '0')}`;
    else if (/^[\p{Cf}\p{Zl}\p{Zp}\p{Cs}]$/u.test(ch)) out += `\\u{${cp.toString(16)}}`;
    else out += ch;
  }
  return out;
}

/** Columns the string takes on a terminal: wide (East Asian, emoji) characters take two, combining marks none. */
export function displayWidth(s: string): number {
  return stringWidth(s, { countAnsiEscapeCodes: true });
}

/** Pads with spaces on the right to `width` terminal columns. */
export function padEndColumns(s: string, width: number): string {
  return s + ' '.repeat(Math.max(0, width - displayWidth(s)));
}

/** Pads with spaces on the left to `width` terminal columns. */
export function padStartColumns(s: string, width: number): string {
  return ' '.repeat(Math.max(0, width - displayWidth(s))) + s;
}

/** Cuts to at most `width` terminal columns, never through a wide character or a grapheme. */
export function truncateColumns(s: string, width: number): string {
  if (displayWidth(s) <= width) return s;
  let out = '';
  let used = 0;
  for (const { segment } of new Intl.Segmenter('en', { granularity: 'grapheme' }).segment(s)) {
    const w = displayWidth(segment);
    if (used + w > width) break;
    out += segment;
    used += w;
  }
  return out;
}

/** For HTML text and attribute values: the five characters that matter as character references, and control
 * characters as \ooo, as for a terminal (a report may well be read with `less`). */
export function escapeHtml(s: string): string {
  return escapeControls(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** C0 control characters but tab and line feed, DEL and C1 as \ooo; nothing else touched. */
function escapeControls(s: string): string {
  return s.replace(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
}

// Prometheus label values need nothing from here: prom-client escapes backslash, double quote and line feed
// as the text exposition format says and keeps every other character, so a scrape carries the exact name
// (test/hostile-names.test.ts parses one strictly).
