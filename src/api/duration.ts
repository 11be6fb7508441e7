/**
 * Go-style durations as Kubernetes objects write them ("5m", "1h30m", "90s").
 * Parsed to milliseconds; sub-millisecond units are accepted but rounded down.
 */
export const DURATION_PATTERN = '^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$';
const PART_RE = /([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)/g;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export function parseDuration(text: string, field: string): number {
  if (!new RegExp(DURATION_PATTERN).test(text)) {
    throw new Error(`${field}: ${JSON.stringify(text)} is not a duration (expected e.g. "30s", "5m", "1h30m")`);
  }
  let ms = 0;
  for (const m of text.matchAll(PART_RE)) ms += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
  return Math.floor(ms);
}

export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
