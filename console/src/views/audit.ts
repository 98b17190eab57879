// The audit trail: kmsd's newest records (Kmsd.ReadAuditRecords, allowed by `kmsd:ReadAudit`),
// filtered by key, principal, event and error.
import { html, nothing, type TemplateResult } from 'lit';
import { readAuditRecords, type AuditFilter, type AuditRecord } from '../api';
import { checked, field, inlineError, settle, type Ctx, type Loaded } from '../ui';

/** The lookups browsing makes (this console included): hidden unless asked for, so the
 * records that matter (changes, cryptographic calls, failures) are not drowned. */
export const LOOKUPS = [
  'DescribeKey',
  'DescribeCustomKeyStores',
  'DescribeClusters',
  'GetCallerIdentity',
  'GetKeyPolicy',
  'GetKeyRotationStatus',
  'GetPublicKey',
  'GetKeyLastUsage',
  'ListAliases',
  'ListGrants',
  'ListKeyPolicies',
  'ListKeyRotations',
  'ListKeys',
  'ListResourceTags',
  'ListRetirableGrants',
  'ReadAuditRecords',
];

const s: { filter: AuditFilter; result: Loaded<{ Records: AuditRecord[]; ScanLimitReached: boolean }> | null; open: string | null } = {
  filter: { Limit: 50, ExcludeEventNames: LOOKUPS },
  result: null,
  open: null,
};

/** Loads the newest records (`?key=` filters by key). */
export async function load(ctx: Ctx, params: URLSearchParams): Promise<void> {
  const key = params.get('key');
  if (key !== null) s.filter = { Limit: 50, KeyId: key, ExcludeEventNames: LOOKUPS };
  await refresh(ctx);
}

async function refresh(ctx: Ctx): Promise<void> {
  s.result = null;
  ctx.update();
  s.result = await settle(readAuditRecords(ctx.creds, s.filter));
  ctx.update();
}

function apply(ctx: Ctx, e: SubmitEvent): void {
  e.preventDefault();
  const form = e.target as HTMLFormElement;
  const errors = field(form, 'errors');
  s.filter = {
    Limit: Number(field(form, 'limit')) || 50,
    KeyId: field(form, 'key') || undefined,
    Principal: field(form, 'principal') || undefined,
    EventName: field(form, 'event') || undefined,
    ErrorCode: errors === 'code' ? field(form, 'errorCode') || '*' : errors === 'any' ? '*' : undefined,
    ExcludeEventNames: checked(form, 'hideLookups') ? LOOKUPS : undefined,
  };
  void refresh(ctx);
}

function keyOf(r: AuditRecord): string {
  return (r.resources || []).map((x) => x.ARN.split('/').pop()).join(', ');
}

/** The page. */
export function view(ctx: Ctx): TemplateResult {
  const f = s.filter;
  const errMode = f.ErrorCode === undefined ? '' : f.ErrorCode === '*' ? 'any' : 'code';
  return html`
    <div class="title-row">
      <h1 tabindex="-1">Audit</h1>
      <button type="button" class="secondary" @click=${() => refresh(ctx)}>Refresh</button>
    </div>
    <p class="muted">The newest records of account ${ctx.identity.account}, newest first. Reading them needs the <code>kmsd:ReadAudit</code> permission (the account admin has it).</p>
    <form class="filters" aria-label="Filter audit records" @submit=${(e: SubmitEvent) => apply(ctx, e)}>
      <label>Key ID or ARN <input name="key" .value=${f.KeyId || ''} spellcheck="false" /></label>
      <label>Principal ARN <input name="principal" .value=${f.Principal || ''} spellcheck="false" /></label>
      <label>Event <input name="event" .value=${f.EventName || ''} placeholder="e.g. Decrypt" /></label>
      <label
        >Outcome
        <select name="errors">
          <option value="" ?selected=${errMode === ''}>All</option>
          <option value="any" ?selected=${errMode === 'any'}>Failed calls</option>
          <option value="code" ?selected=${errMode === 'code'}>Failed with code…</option>
        </select></label
      >
      <label>Error code <input name="errorCode" .value=${errMode === 'code' ? f.ErrorCode || '' : ''} placeholder="AccessDeniedException" /></label>
      <label>Show <input name="limit" type="number" min="1" max="500" .value=${String(f.Limit || 50)} /></label>
      <label class="check"><input type="checkbox" name="hideLookups" .checked=${!!f.ExcludeEventNames} /> Hide lookups (Describe, List, Get)</label>
      <button type="submit">Apply filters</button>
    </form>
    ${!s.result
      ? html`<p class="muted">Loading…</p>`
      : !s.result.ok
        ? inlineError(s.result.error)
        : html`${s.result.value.ScanLimitReached ? html`<p class="muted">Older records were not searched (the read is bounded); narrow the filters.</p>` : nothing}
            <table data-testid="audit-table">
              <caption class="sr-only">Audit records</caption>
              <thead>
                <tr><th scope="col">Time (UTC)</th><th scope="col">Event</th><th scope="col">Principal</th><th scope="col">Key</th><th scope="col">Outcome</th><th scope="col">Source</th></tr>
              </thead>
              <tbody>
                ${s.result.value.Records.map(
                  (r) => html`<tr class=${r.errorCode ? 'failed' : ''}>
                      <td class="nowrap">${r.eventTime.replace('T', ' ').replace('Z', '')}</td>
                      <td>
                        <button type="button" class="link" aria-expanded=${s.open === r.eventID ? 'true' : 'false'} @click=${() => { s.open = s.open === r.eventID ? null : r.eventID; ctx.update(); }}>${r.eventName || '(none)'}</button>
                      </td>
                      <td class="small">${r.userIdentity?.arn || r.userIdentity?.type || '—'}</td>
                      <td class="mono small">${keyOf(r) ? html`<a href="#/keys/${keyOf(r).split(', ')[0]}">${keyOf(r)}</a>` : '—'}</td>
                      <td>${r.errorCode ? html`<span class="badge state-error" title=${r.errorMessage || ''}>${r.errorCode}</span>` : html`<span class="badge state-enabled">OK</span>`}</td>
                      <td class="small">${r.sourceIPAddress || ''}</td>
                    </tr>
                    ${s.open === r.eventID ? html`<tr><td colspan="6"><pre class="record">${JSON.stringify(r, null, 2)}</pre></td></tr>` : nothing}`,
                )}
              </tbody>
            </table>
            ${s.result.value.Records.length === 0 ? html`<p class="muted">No records match.</p>` : nothing}`}
  `;
}
