// The lines of a ksmtuned.conf-style file (tune.conf, pagefuse.conf): KEY=VALUE, optionally after `export `,
// with blank lines and '#' comments between them. What a value may hold is each file's own rule.

export interface ConfigLine {
  /** 1-based, for file:line in errors. */
  line: number;
  /** The key, or undefined for a line that is not KEY=VALUE (its text is not kept: the file may be anyone's). */
  key: string | undefined;
  /** What follows the '=', as written. */
  value: string;
}

/** Each line that is not blank or a comment (a CR before the newline dropped, the line trimmed). */
export function* configLines(text: string): Generator<ConfigLine> {
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].replace(/\r$/, '').trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$/.exec(line);
    yield m === null ? { line: i + 1, key: undefined, value: '' } : { line: i + 1, key: m[1], value: m[2] };
  }
}
