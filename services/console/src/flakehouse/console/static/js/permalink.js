// A query's URL, and the same query as a CLI command and as a call to the JSON API.

export function permalink(sql, timeZone) {
  return `/?${new URLSearchParams({ sql, tz: timeZone })}`;
}

// {sql, tz} from a page's query string, or null when it carries no SQL.
export function readPermalink(search) {
  const params = new URLSearchParams(search);
  const sql = params.get('sql');
  return sql ? { sql, tz: params.get('tz') || '' } : null;
}

// POSIX shell quoting: single quotes, and each ' written as '\''.
export function shellQuote(text) {
  return /^[A-Za-z0-9_./:=+-]+$/.test(text) ? text : `'${text.replaceAll("'", "'\\''")}'`;
}

export function cliCommand(sql, timeZone) {
  const zone = timeZone ? ` --tz ${shellQuote(timeZone)}` : '';
  return `flakehouse query${zone} ${shellQuote(sql)}`;
}

export function curlCommand(sql, timeZone, origin) {
  const parts = [
    'curl -H "Authorization: Bearer $FLAKEHOUSE_TOKEN" --get',
    `--data-urlencode ${shellQuote(`sql=${sql}`)}`,
  ];
  if (timeZone) parts.push(`--data-urlencode ${shellQuote(`time_zone=${timeZone}`)}`);
  parts.push(`${origin}/api/v1/query`);
  return parts.join(' ');
}
