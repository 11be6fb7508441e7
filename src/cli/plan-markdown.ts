/**
 * `vmmem plan -o markdown`: the plan as a GitHub-flavoured Markdown table a CI
 * bot can post on a pull request — per VMM and field that changes or is held:
 * observed → desired, the verdict, and what the owner must do.
 *
 * Every cell holds text from the manifests, the saved state or the hypervisor
 * (VM names, hypervisor messages), which a tenant controls. It is escaped so it
 * stays one cell of plain text: no HTML, no links, images, emphasis or code,
 * no line breaks, no @-mentions (which would notify people) and no autolinks.
 * The comment is bounded too (cell length, and rows stop before GitHub's
 * 65,536-character limit for a comment).
 */
import type { PlanReport } from './plan-report.ts';
import { hasChanges, isStalled } from './plan-report.ts';

/** GitHub refuses a comment over 65,536 characters: rows stop before this, with a count of the rest. */
export const MAX_MARKDOWN_CHARS = 60_000;
export const MAX_CELL_CHARS = 600;

const ZWSP = '\u200B';

/**
 * One table cell of plain text. Control and format characters (line breaks, bidi overrides) become
 * spaces; Markdown's
 * inline punctuation is backslash-escaped; <, > and & become entities (no HTML, no entity of the
 * author's choosing); a zero-width space after @ and inside "://" and "www." stops mentions and
 * autolinks. Long text is cut (by code point, so no surrogate half is left).
 */
export function markdownCell(text: string, max = MAX_CELL_CHARS): string {
  const points = [...text];
  const cut = points.length > max ? points.slice(0, max - 1).join('') + '…' : text;
  return cut
    .replace(/[\p{Cc}\p{Cf}\u2028\u2029]+/gu, ' ')
    .replace(/[\\`*_[\]~|]/g, (c) => `\\${c}`)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/@/g, `@${ZWSP}`)
    .replace(/:\/\//g, `:${ZWSP}//`)
    .replace(/www\./gi, (m) => `${m.slice(0, 3)}${ZWSP}.`);
}

type Verdict = NonNullable<PlanReport['verdicts']>[number];

/** The part of a verdict message after "field: desired X, observed Y: Reason: ". */
function why(v: Verdict): string {
  const head = `${v.field}: desired ${v.desired}, observed ${v.observed}: ${v.reason}: `;
  return v.message.startsWith(head) ? v.message.slice(head.length) : v.message;
}

/** What the VMM's owner has to do about one field's verdict. */
export function ownerAction(r: PlanReport, v: Verdict): string {
  switch (v.verdict) {
    case 'Applied': {
      const worlds = [...new Set((r.steps ?? []).filter((s) => s.field === v.field).map((s) => s.world))];
      if (!worlds.length) return 'nothing: already in effect';
      // The memory field carries a live shrink: say when the guest's use did not guard it.
      const note = r.shrink && v.field === 'memory' ? `; ${r.shrink.message}` : '';
      return `nothing: vmmem sets it (${worlds.join(' and ')})${note}`;
    }
    case 'RestartRequired':
      return `restart the VM (shut down, then start) for it to take effect: ${why(v)}`;
    case 'AwaitingPowerOff':
      return `power the VM off for it to take effect: ${why(v)}`;
    default:
      return `change the spec (nothing is sent until then): ${why(v)}`;
  }
}

/** A field worth a row: it changes, or it does not reach its desired value. */
function shown(r: PlanReport, v: Verdict): boolean {
  return v.verdict !== 'Applied' || v.observed !== v.desired || (r.steps ?? []).some((s) => s.field === v.field);
}

function summary(reports: readonly PlanReport[]): string {
  const count = (pred: (r: PlanReport) => boolean) => reports.filter(pred).length;
  const errors = count((r) => r.error !== undefined);
  const stalled = count((r) => r.error === undefined && isStalled(r));
  const changes = count((r) => r.error === undefined && !isStalled(r) && hasChanges(r));
  const waiting = count((r) => r.error === undefined && !isStalled(r) && !hasChanges(r) && (r.verdicts ?? []).some((v) => v.verdict !== 'Applied'));
  const unchanged = reports.length - errors - stalled - changes - waiting;
  const parts = [`${changes} to change`, `${stalled} stalled`, `${waiting} waiting for a restart or power-off`, `${unchanged} unchanged`];
  if (errors) parts.push(`${errors} could not be planned`);
  return `**${parts.join(', ')}** (${reports.length} VirtualMachineMemor${reports.length === 1 ? 'y' : 'ies'})`;
}

/** The whole comment: a heading, the counts, and one row per field that changes or is held. */
export function renderMarkdown(reports: readonly PlanReport[]): string {
  const rows: string[] = [];
  for (const r of reports) {
    const vmm = markdownCell(r.object);
    if (r.error !== undefined) {
      rows.push(`| ${vmm} | — | — | Error | ${markdownCell(`fix what stops vmmem from planning it: ${r.error}`)} |`);
      continue;
    }
    for (const v of r.verdicts ?? []) {
      if (!shown(r, v)) continue;
      const verdict = v.reason === v.verdict ? v.verdict : `${v.verdict} (${v.reason})`;
      rows.push(`| ${vmm} | ${v.field} | ${markdownCell(`${v.observed} → ${v.desired}`)} | ${markdownCell(verdict)} | ${markdownCell(ownerAction(r, v))} |`);
    }
  }
  const lines = ['### vmmem plan', '', summary(reports), ''];
  if (rows.length === 0) lines.push('Nothing to change: every declared value is in effect.');
  else {
    lines.push('| VMM | field | observed → desired | verdict | what the owner must do |', '|---|---|---|---|---|');
    let size = lines.reduce((n, l) => n + l.length + 1, 0);
    let shownRows = 0;
    for (const row of rows) {
      if (size + row.length + 1 > MAX_MARKDOWN_CHARS) break;
      lines.push(row);
      size += row.length + 1;
      shownRows++;
    }
    if (shownRows < rows.length) lines.push('', `… and ${rows.length - shownRows} more rows: run \`vmmem plan -o table\` for all of them.`);
  }
  return lines.join('\n');
}
