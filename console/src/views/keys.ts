// The keys list: every key of the account with its aliases, filtered by state, spec, usage,
// origin and key store.
import { html, nothing, type TemplateResult } from 'lit';
import { DescribeKeyCommand, ListAliasesCommand, ListKeysCommand, type KeyMetadata } from '@aws-sdk/client-kms';
import { inlineError, stateBadge, when, type Ctx } from '../ui';
import { toApiError, type ApiError } from '../api';

/** One row: the key's metadata, or why it could not be described. */
export interface KeyRow {
  keyId: string;
  meta?: KeyMetadata;
  error?: ApiError;
  aliases: string[];
}

/** Most keys listed (pages of ListKeys read). */
const MAX_KEYS = 1000;
/** DescribeKey calls in flight at once. */
const DESCRIBE_CONCURRENCY = 6;

const s: {
  rows: KeyRow[] | null;
  error: unknown;
  truncated: boolean;
  filter: Record<string, string>;
} = { rows: null, error: null, truncated: false, filter: {} };

/** Lists the account's keys (used by other views too). */
export async function listKeys(ctx: Ctx): Promise<{ rows: KeyRow[]; truncated: boolean }> {
  const ids: string[] = [];
  let marker: string | undefined;
  do {
    const page = await ctx.kms.send(new ListKeysCommand({ Limit: 1000, Marker: marker }));
    for (const k of page.Keys || []) if (k.KeyId) ids.push(k.KeyId);
    marker = page.Truncated ? page.NextMarker : undefined;
  } while (marker && ids.length < MAX_KEYS);
  const aliases = new Map<string, string[]>();
  let aliasMarker: string | undefined;
  do {
    const page = await ctx.kms.send(new ListAliasesCommand({ Limit: 100, Marker: aliasMarker }));
    for (const a of page.Aliases || []) {
      if (a.TargetKeyId && a.AliasName) aliases.set(a.TargetKeyId, [...(aliases.get(a.TargetKeyId) || []), a.AliasName]);
    }
    aliasMarker = page.Truncated ? page.NextMarker : undefined;
  } while (aliasMarker);
  // Described a few at a time, not all at once: kind to kmsd and to the browser.
  const rows: KeyRow[] = new Array(ids.length);
  let next = 0;
  const worker = async () => {
    while (next < ids.length) {
      const i = next++;
      const keyId = ids[i];
      try {
        const d = await ctx.kms.send(new DescribeKeyCommand({ KeyId: keyId }));
        rows[i] = { keyId, meta: d.KeyMetadata, aliases: aliases.get(keyId) || [] };
      } catch (e) {
        rows[i] = { keyId, error: toApiError(e), aliases: aliases.get(keyId) || [] };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(DESCRIBE_CONCURRENCY, ids.length) }, worker));
  rows.sort((a, b) => (b.meta?.CreationDate?.getTime() || 0) - (a.meta?.CreationDate?.getTime() || 0));
  return { rows, truncated: !!marker };
}

/** Loads the list. */
export async function load(ctx: Ctx): Promise<void> {
  s.rows = null;
  s.error = null;
  ctx.update();
  try {
    const r = await listKeys(ctx);
    s.rows = r.rows;
    s.truncated = r.truncated;
  } catch (e) {
    s.error = e;
  }
}

const FILTERS: { name: string; label: string; of: (m: KeyMetadata) => string | undefined }[] = [
  { name: 'state', label: 'State', of: (m) => m.KeyState },
  { name: 'spec', label: 'Key spec', of: (m) => m.KeySpec },
  { name: 'usage', label: 'Usage', of: (m) => m.KeyUsage },
  { name: 'origin', label: 'Origin', of: (m) => m.Origin },
  { name: 'store', label: 'Key store', of: (m) => m.CustomKeyStoreId || '(kmsd)' },
];

function matches(r: KeyRow): boolean {
  return FILTERS.every((f) => !s.filter[f.name] || (r.meta && f.of(r.meta) === s.filter[f.name]));
}

function filterBar(ctx: Ctx, rows: KeyRow[]): TemplateResult {
  return html`<form class="filters" aria-label="Filter keys" @submit=${(e: Event) => e.preventDefault()}>
    ${FILTERS.map((f) => {
      const values = [...new Set(rows.map((r) => (r.meta ? f.of(r.meta) : undefined)).filter((v): v is string => !!v))].sort();
      return html`<label
        >${f.label}
        <select
          name=${f.name}
          @change=${(e: Event) => {
            s.filter[f.name] = (e.target as HTMLSelectElement).value;
            ctx.update();
          }}
        >
          <option value="">Any</option>
          ${values.map((v) => html`<option value=${v} ?selected=${s.filter[f.name] === v}>${v}</option>`)}
        </select></label
      >`;
    })}
  </form>`;
}

/** The list page. */
export function view(ctx: Ctx): TemplateResult {
  const rows = s.rows;
  return html`
    <div class="title-row">
      <h1 tabindex="-1">Keys</h1>
      <a class="button" href="#/create-key">Create key</a>
    </div>
    ${s.error ? inlineError(s.error) : nothing}
    ${rows === null && !s.error ? html`<p class="muted">Loading keys…</p>` : nothing}
    ${rows
      ? html`${filterBar(ctx, rows)}
          ${s.truncated ? html`<p class="muted">Showing the first ${MAX_KEYS} keys.</p>` : nothing}
          <table data-testid="keys-table">
            <caption class="sr-only">Keys of account ${ctx.identity.account}</caption>
            <thead>
              <tr><th scope="col">Aliases</th><th scope="col">Key ID</th><th scope="col">State</th><th scope="col">Spec</th><th scope="col">Usage</th><th scope="col">Origin</th><th scope="col">Created</th></tr>
            </thead>
            <tbody>
              ${rows.filter(matches).map(
                (r) => html`<tr>
                  <td>${r.aliases.length ? r.aliases.join(', ') : html`<span class="muted">—</span>`}</td>
                  <td><a href="#/keys/${r.keyId}" class="mono">${r.keyId}</a>${r.meta?.Description ? html`<div class="muted small">${r.meta.Description}</div>` : nothing}</td>
                  ${r.meta
                    ? html`<td>${stateBadge(r.meta.KeyState)}</td><td>${r.meta.KeySpec}</td><td>${r.meta.KeyUsage}</td><td>${r.meta.Origin}${r.meta.CustomKeyStoreId ? html`<div class="muted small">${r.meta.CustomKeyStoreId}</div>` : nothing}</td><td>${when(r.meta.CreationDate)}</td>`
                    : html`<td colspan="5" class="inline-error">${r.error?.code}: ${r.error?.message}</td>`}
                </tr>`,
              )}
            </tbody>
          </table>
          ${rows.length === 0 ? html`<p class="muted">No keys yet. <a href="#/create-key">Create one</a>.</p>` : nothing}`
      : nothing}
  `;
}
