/**
 * withMatcher returns the label selector with label="value" in it: it
 * replaces the label's matchers if the selector has any and adds one if
 * not. An empty value removes the label's matchers.
 */
export function withMatcher(selector: string, label: string, value: string): string {
  const kept = matchers(selector).filter((m) => matcherLabel(m) !== label);
  if (value !== '') {
    kept.push(`${label}=${JSON.stringify(value)}`);
  }
  return `{${kept.join(', ')}}`;
}

/** matchers splits a selector such as {a="x,y", b=~"z"} into its matchers, minding quotes. */
export function matchers(selector: string): string[] {
  const body = selector.trim().replace(/^\{/, '').replace(/\}$/, '');
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (quoted && c === '\\') {
      cur += c + (body[i + 1] ?? '');
      i++;
      continue;
    }
    if (c === '"') {
      quoted = !quoted;
    }
    if (c === ',' && !quoted) {
      out.push(cur.trim());
      cur = '';
      continue;
    }
    cur += c;
  }
  out.push(cur.trim());
  return out.filter((m) => m !== '');
}

function matcherLabel(m: string): string {
  const match = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)/.exec(m);
  return match ? match[1] : '';
}
