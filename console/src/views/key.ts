// One key's page: metadata, state actions, aliases, tags, rotation, grants and the key policy
// editor (which checks the JSON before sending and shows kmsd's own verdict after).
import { html, nothing, type TemplateResult } from 'lit';
import {
  CancelKeyDeletionCommand,
  CreateAliasCommand,
  DeleteAliasCommand,
  DescribeKeyCommand,
  DisableKeyCommand,
  DisableKeyRotationCommand,
  EnableKeyCommand,
  EnableKeyRotationCommand,
  GetKeyPolicyCommand,
  GetKeyRotationStatusCommand,
  ListAliasesCommand,
  ListGrantsCommand,
  ListKeyRotationsCommand,
  ListResourceTagsCommand,
  PutKeyPolicyCommand,
  RotateKeyOnDemandCommand,
  ScheduleKeyDeletionCommand,
  TagResourceCommand,
  UntagResourceCommand,
  UpdateKeyDescriptionCommand,
  type AliasListEntry,
  type GetKeyRotationStatusCommandOutput,
  type GrantListEntry,
  type KeyMetadata,
  type RotationsListEntry,
  type Tag,
} from '@aws-sdk/client-kms';
import { field, inlineError, settle, stateBadge, when, type Ctx, type Loaded } from '../ui';

const s: {
  keyId: string;
  meta: Loaded<KeyMetadata | undefined> | null;
  aliases: Loaded<AliasListEntry[]> | null;
  tags: Loaded<Tag[]> | null;
  rotation: Loaded<GetKeyRotationStatusCommandOutput> | null;
  rotations: Loaded<RotationsListEntry[]> | null;
  grants: Loaded<GrantListEntry[]> | null;
  policy: Loaded<string> | null;
  policyDraft: string;
  policyJsonError: string | null;
  policySaveError: { code: string; text: string } | null;
} = {
  keyId: '',
  meta: null,
  aliases: null,
  tags: null,
  rotation: null,
  rotations: null,
  grants: null,
  policy: null,
  policyDraft: '',
  policyJsonError: null,
  policySaveError: null,
};

/** Loads everything about the key (each section keeps its own error, e.g. a denied read). */
export async function load(ctx: Ctx, keyId: string): Promise<void> {
  if (s.keyId !== keyId) {
    Object.assign(s, { meta: null, aliases: null, tags: null, rotation: null, rotations: null, grants: null, policy: null });
  }
  s.keyId = keyId;
  ctx.update();
  const kms = ctx.kms;
  s.meta = await settle(kms.send(new DescribeKeyCommand({ KeyId: keyId })).then((r) => r.KeyMetadata));
  const id = s.meta.ok && s.meta.value?.KeyId ? s.meta.value.KeyId : keyId;
  const symmetric = s.meta.ok && s.meta.value?.KeySpec === 'SYMMETRIC_DEFAULT';
  const [aliases, tags, rotation, rotations, grants, policy] = await Promise.all([
    settle(kms.send(new ListAliasesCommand({ KeyId: id, Limit: 100 })).then((r) => r.Aliases || [])),
    settle(kms.send(new ListResourceTagsCommand({ KeyId: id, Limit: 50 })).then((r) => r.Tags || [])),
    symmetric ? settle(kms.send(new GetKeyRotationStatusCommand({ KeyId: id }))) : Promise.resolve(null),
    symmetric ? settle(kms.send(new ListKeyRotationsCommand({ KeyId: id, Limit: 100 })).then((r) => r.Rotations || [])) : Promise.resolve(null),
    settle(kms.send(new ListGrantsCommand({ KeyId: id, Limit: 100 })).then((r) => r.Grants || [])),
    settle(kms.send(new GetKeyPolicyCommand({ KeyId: id, PolicyName: 'default' })).then((r) => r.Policy || '')),
  ]);
  Object.assign(s, { aliases, tags, rotation, rotations, grants, policy });
  if (policy.ok) {
    s.policyDraft = pretty(policy.value);
    s.policyJsonError = null;
    s.policySaveError = null;
  }
}

/** " (in N days)" until `d`, rounded up; empty without a date. */
function daysUntil(d: Date | undefined): string {
  if (!d) return '';
  const days = Math.ceil((d.getTime() - Date.now()) / 86_400_000);
  return days > 0 ? ` (in ${days} day${days === 1 ? '' : 's'})` : ' (due now)';
}

function pretty(json: string): string {
  try {
    return JSON.stringify(JSON.parse(json), null, 2);
  } catch {
    return json;
  }
}

/** Runs an action on this key, then reloads the page's data (and clears `form`). */
async function act(ctx: Ctx, what: string, action: () => Promise<unknown>, done: string, form?: HTMLFormElement): Promise<void> {
  const ok = await ctx.run(what, async () => {
    await action();
    return true;
  });
  if (ok) {
    form?.reset();
    await load(ctx, s.keyId);
    ctx.message = { kind: 'ok', text: done };
    ctx.update();
  }
}

function metadata(m: KeyMetadata): TemplateResult {
  const row = (k: string, v: unknown) =>
    v === undefined || v === null || v === '' ? nothing : html`<dt>${k}</dt><dd>${v instanceof Date ? when(v) : String(v)}</dd>`;
  return html`<dl class="meta" data-testid="key-metadata">
    ${row('Key ID', m.KeyId)} ${row('ARN', m.Arn)} ${row('Description', m.Description)}
    <dt>State</dt><dd>${stateBadge(m.KeyState)}</dd>
    ${row('Key spec', m.KeySpec)} ${row('Key usage', m.KeyUsage)} ${row('Origin', m.Origin)}
    ${row('Key manager', m.KeyManager)} ${row('Created', m.CreationDate)} ${row('Custom key store', m.CustomKeyStoreId)}
    ${row('CloudHSM cluster', m.CloudHsmClusterId)} ${row('External key', m.XksKeyConfiguration?.Id)}
    ${row('Multi-Region', m.MultiRegion ? `yes (${m.MultiRegionConfiguration?.MultiRegionKeyType})` : 'no')}
    ${row('Deletion date', m.DeletionDate)} ${row('Pending window (days)', m.PendingDeletionWindowInDays)}
    ${row('Valid to', m.ValidTo)} ${row('Encryption algorithms', m.EncryptionAlgorithms?.join(', '))}
    ${row('Signing algorithms', m.SigningAlgorithms?.join(', '))} ${row('MAC algorithms', m.MacAlgorithms?.join(', '))}
    ${row('Key agreement algorithms', m.KeyAgreementAlgorithms?.join(', '))}
  </dl>`;
}

function stateActions(ctx: Ctx, m: KeyMetadata): TemplateResult {
  const id = m.KeyId as string;
  const state = m.KeyState;
  return html`<section aria-labelledby="h-state">
    <h2 id="h-state">State</h2>
    <div class="actions">
      ${state === 'Disabled'
        ? html`<button type="button" @click=${() => act(ctx, 'Enabling the key', () => ctx.kms.send(new EnableKeyCommand({ KeyId: id })), 'Key enabled.')}>Enable key</button>`
        : nothing}
      ${state === 'Enabled'
        ? html`<button type="button" class="secondary" @click=${() => act(ctx, 'Disabling the key', () => ctx.kms.send(new DisableKeyCommand({ KeyId: id })), 'Key disabled.')}>Disable key</button>`
        : nothing}
      ${state === 'PendingDeletion'
        ? html`<button type="button" @click=${() => act(ctx, 'Cancelling the deletion', () => ctx.kms.send(new CancelKeyDeletionCommand({ KeyId: id })), 'Deletion cancelled: the key is Disabled; enable it to use it.')}>Cancel deletion</button>`
        : nothing}
    </div>
    ${state !== 'PendingDeletion' && state !== 'PendingReplicaDeletion'
      ? html`<form
          class="inline"
          @submit=${(e: SubmitEvent) => {
            e.preventDefault();
            const days = Number(field(e.target as HTMLFormElement, 'window'));
            // Deleting a key makes everything encrypted under it unrecoverable: ask first.
            if (!window.confirm(`Schedule the deletion of key ${id} in ${days} days? After that, data encrypted under it cannot be decrypted.`)) return;
            void act(
              ctx,
              'Scheduling the deletion',
              () => ctx.kms.send(new ScheduleKeyDeletionCommand({ KeyId: id, PendingWindowInDays: days })),
              `Deletion scheduled in ${days} days.`,
            );
          }}
        >
          <label>Waiting period (days, 7–30) <input name="window" type="number" min="7" max="30" value="30" required /></label>
          <button type="submit" class="danger">Schedule deletion</button>
        </form>`
      : nothing}
    <form
      class="inline"
      @submit=${(e: SubmitEvent) => {
        e.preventDefault();
        const d = field(e.target as HTMLFormElement, 'description');
        void act(ctx, 'Updating the description', () => ctx.kms.send(new UpdateKeyDescriptionCommand({ KeyId: id, Description: d })), 'Description updated.');
      }}
    >
      <label>Description <input name="description" .value=${m.Description || ''} maxlength="8192" /></label>
      <button type="submit" class="secondary">Update description</button>
    </form>
  </section>`;
}

function aliasesSection(ctx: Ctx, id: string): TemplateResult {
  return html`<section aria-labelledby="h-aliases">
    <h2 id="h-aliases">Aliases</h2>
    ${!s.aliases
      ? html`<p class="muted">Loading…</p>`
      : !s.aliases.ok
        ? inlineError(s.aliases.error)
        : html`<ul class="plain" data-testid="aliases">
            ${s.aliases.value.map(
              (a) => html`<li>
                <span class="mono">${a.AliasName}</span>
                <button type="button" class="link" aria-label="Delete alias ${a.AliasName}" @click=${() => act(ctx, 'Deleting the alias', () => ctx.kms.send(new DeleteAliasCommand({ AliasName: a.AliasName })), `Alias ${a.AliasName} deleted.`)}>Delete</button>
              </li>`,
            )}
            ${s.aliases.value.length === 0 ? html`<li class="muted">No aliases.</li>` : nothing}
          </ul>`}
    <form
      class="inline"
      @submit=${(e: SubmitEvent) => {
        e.preventDefault();
        const form = e.target as HTMLFormElement;
        let name = field(form, 'alias');
        if (!name.startsWith('alias/')) name = `alias/${name}`;
        void act(ctx, 'Creating the alias', () => ctx.kms.send(new CreateAliasCommand({ AliasName: name, TargetKeyId: id })), `Alias ${name} created.`, form);
      }}
    >
      <label>Alias name <input name="alias" placeholder="alias/my-app" required pattern="(alias\\/)?[\\w\\/\\-]+" /></label>
      <button type="submit">Add alias</button>
    </form>
  </section>`;
}

function tagsSection(ctx: Ctx, id: string): TemplateResult {
  return html`<section aria-labelledby="h-tags">
    <h2 id="h-tags">Tags</h2>
    ${!s.tags
      ? html`<p class="muted">Loading…</p>`
      : !s.tags.ok
        ? inlineError(s.tags.error)
        : s.tags.value.length === 0
          ? html`<p class="muted">No tags.</p>`
          : html`<table>
              <thead><tr><th scope="col">Key</th><th scope="col">Value</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
              <tbody>
                ${s.tags.value.map(
                  (t) => html`<tr><td>${t.TagKey}</td><td>${t.TagValue}</td><td><button type="button" class="link" aria-label="Remove tag ${t.TagKey}" @click=${() => act(ctx, 'Removing the tag', () => ctx.kms.send(new UntagResourceCommand({ KeyId: id, TagKeys: [t.TagKey as string] })), `Tag ${t.TagKey} removed.`)}>Remove</button></td></tr>`,
                )}
              </tbody>
            </table>`}
    <form
      class="inline"
      @submit=${(e: SubmitEvent) => {
        e.preventDefault();
        const form = e.target as HTMLFormElement;
        const tag = { TagKey: field(form, 'tagKey'), TagValue: field(form, 'tagValue') };
        void act(ctx, 'Tagging the key', () => ctx.kms.send(new TagResourceCommand({ KeyId: id, Tags: [tag] })), `Tag ${tag.TagKey} set.`, form);
      }}
    >
      <label>Tag key <input name="tagKey" required maxlength="128" /></label>
      <label>Tag value <input name="tagValue" maxlength="256" /></label>
      <button type="submit" class="secondary">Set tag</button>
    </form>
  </section>`;
}

function rotationSection(ctx: Ctx, m: KeyMetadata): TemplateResult {
  const id = m.KeyId as string;
  const symmetric = m.KeySpec === 'SYMMETRIC_DEFAULT';
  const r = s.rotation;
  return html`<section aria-labelledby="h-rotation">
    <h2 id="h-rotation">Rotation</h2>
    ${!symmetric
      ? html`<p class="muted">Automatic rotation applies to symmetric encryption keys only.</p>`
      : !r
        ? html`<p class="muted">Loading…</p>`
        : !r.ok
          ? inlineError(r.error)
          : html`<p data-testid="rotation-status">
                Automatic rotation: <strong>${r.value.KeyRotationEnabled ? 'on' : 'off'}</strong>
                ${r.value.KeyRotationEnabled ? html` every ${r.value.RotationPeriodInDays} days, next ${when(r.value.NextRotationDate)}` : nothing}
                ${r.value.OnDemandRotationStartDate ? html` · on-demand rotation started ${when(r.value.OnDemandRotationStartDate)}` : nothing}
              </p>
              <div class="actions">
                ${r.value.KeyRotationEnabled
                  ? html`<button type="button" class="secondary" @click=${() => act(ctx, 'Turning automatic rotation off', () => ctx.kms.send(new DisableKeyRotationCommand({ KeyId: id })), 'Automatic rotation turned off.')}>Turn automatic rotation off</button>`
                  : html`<form
                      class="inline"
                      @submit=${(e: SubmitEvent) => {
                        e.preventDefault();
                        const days = Number(field(e.target as HTMLFormElement, 'period'));
                        void act(ctx, 'Turning automatic rotation on', () => ctx.kms.send(new EnableKeyRotationCommand({ KeyId: id, RotationPeriodInDays: days })), `Automatic rotation every ${days} days.`);
                      }}
                    >
                      <label>Rotation period (days, 90–2560) <input name="period" type="number" min="90" max="2560" value="365" required /></label>
                      <button type="submit" class="secondary">Turn automatic rotation on</button>
                    </form>`}
                <button type="button" @click=${() => act(ctx, 'Rotating the key', () => ctx.kms.send(new RotateKeyOnDemandCommand({ KeyId: id })), 'Key rotated: new material encrypts from now on; older ciphertexts still decrypt.')}>Rotate now</button>
              </div>`}
    ${s.rotations?.ok && s.rotations.value.length
      ? html`<table>
          <caption>Rotation history</caption>
          <thead><tr><th scope="col">Rotated</th><th scope="col">Type</th><th scope="col">Material</th></tr></thead>
          <tbody>${s.rotations.value.map((x) => html`<tr><td>${when(x.RotationDate)}</td><td>${x.RotationType}</td><td class="mono small">${x.KeyMaterialId || ''}</td></tr>`)}</tbody>
        </table>`
      : s.rotations && !s.rotations.ok && symmetric
        ? inlineError(s.rotations.error)
        : nothing}
  </section>`;
}

function grantsSection(): TemplateResult {
  return html`<section aria-labelledby="h-grants">
    <h2 id="h-grants">Grants</h2>
    ${!s.grants
      ? html`<p class="muted">Loading…</p>`
      : !s.grants.ok
        ? inlineError(s.grants.error)
        : s.grants.value.length === 0
          ? html`<p class="muted">No grants.</p>`
          : html`<table>
              <thead><tr><th scope="col">Grant ID</th><th scope="col">Name</th><th scope="col">Grantee</th><th scope="col">Operations</th><th scope="col">Created</th></tr></thead>
              <tbody>
                ${s.grants.value.map((g) => html`<tr><td class="mono small">${g.GrantId}</td><td>${g.Name || ''}</td><td>${g.GranteePrincipal}</td><td>${(g.Operations || []).join(', ')}</td><td>${when(g.CreationDate)}</td></tr>`)}
              </tbody>
            </table>`}
  </section>`;
}

function policySection(ctx: Ctx, id: string): TemplateResult {
  const onInput = (e: Event) => {
    s.policyDraft = (e.target as HTMLTextAreaElement).value;
    try {
      JSON.parse(s.policyDraft);
      s.policyJsonError = null;
    } catch (err) {
      s.policyJsonError = `Not valid JSON: ${(err as Error).message}`;
    }
    ctx.update();
  };
  const save = async (e: SubmitEvent) => {
    e.preventDefault();
    if (s.policyJsonError) return;
    s.policySaveError = null;
    const draft = s.policyDraft;
    await act(ctx, 'Saving the key policy', () => ctx.kms.send(new PutKeyPolicyCommand({ KeyId: id, PolicyName: 'default', Policy: draft })), 'Key policy saved.');
    if (ctx.message?.kind === 'error') {
      // kmsd refused it: keep the draft to fix, and show why next to the editor too.
      s.policySaveError = { code: ctx.message.code || 'Error', text: ctx.message.text };
      s.policyDraft = draft;
      ctx.update();
    }
  };
  return html`<section aria-labelledby="h-policy">
    <h2 id="h-policy">Key policy</h2>
    ${!s.policy
      ? html`<p class="muted">Loading…</p>`
      : !s.policy.ok
        ? inlineError(s.policy.error)
        : html`<form @submit=${save}>
            <label for="policy">Policy document (JSON)</label>
            <textarea
              id="policy"
              name="policy"
              rows="18"
              spellcheck="false"
              aria-describedby="policy-check"
              aria-invalid=${s.policyJsonError ? 'true' : 'false'}
              .value=${s.policyDraft}
              @input=${onInput}
            ></textarea>
            <p id="policy-check" class=${s.policyJsonError ? 'inline-error' : 'muted small'} role=${s.policyJsonError ? 'alert' : 'note'}>
              ${s.policyJsonError || 'kmsd checks the policy when you save it (grammar, principals, and that you do not lock yourself out).'}
            </p>
            ${s.policySaveError
              ? html`<p class="inline-error" data-testid="policy-error"><strong>${s.policySaveError.code}:</strong> ${s.policySaveError.text}</p>`
              : nothing}
            <div class="actions">
              <button type="submit" ?disabled=${!!s.policyJsonError}>Save policy</button>
              <button type="button" class="secondary" @click=${() => { if (s.policy?.ok) { s.policyDraft = pretty(s.policy.value); s.policyJsonError = null; ctx.update(); } }}>Revert</button>
            </div>
          </form>`}
  </section>`;
}

/** The key page. */
export function view(ctx: Ctx): TemplateResult {
  const m = s.meta;
  if (!m) return html`<h1 tabindex="-1">Key</h1><p class="muted">Loading ${s.keyId}…</p>`;
  if (!m.ok || !m.value) return html`<h1 tabindex="-1">Key ${s.keyId}</h1>${m.ok ? nothing : inlineError(m.error)}`;
  const meta = m.value;
  const id = meta.KeyId as string;
  const names = s.aliases?.ok ? s.aliases.value.map((a) => a.AliasName).join(', ') : '';
  return html`
    <p class="crumbs"><a href="#/keys">Keys</a> / <span class="mono">${id}</span></p>
    <div class="title-row">
      <h1 tabindex="-1">${names || 'Key'} ${stateBadge(meta.KeyState)}</h1>
      <div class="actions">
        <a class="button secondary" href="#/try?key=${encodeURIComponent(id)}">Try it with this key</a>
        <a class="button secondary" href="#/audit?key=${encodeURIComponent(id)}">Audit events</a>
      </div>
    </div>
    ${meta.KeyState === 'PendingDeletion'
      ? html`<p class="warning" role="note">Scheduled for deletion on ${when(meta.DeletionDate)}${daysUntil(meta.DeletionDate)}. Until then the key cannot be used; cancel the deletion to keep it.</p>`
      : nothing}
    <div class="grid">
      <section aria-labelledby="h-meta"><h2 id="h-meta">Details</h2>${metadata(meta)}</section>
      <div>${stateActions(ctx, meta)} ${aliasesSection(ctx, id)}</div>
    </div>
    ${policySection(ctx, id)} ${rotationSection(ctx, meta)} ${tagsSection(ctx, id)} ${grantsSection()}
  `;
}
