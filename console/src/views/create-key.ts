// The create-key wizard: every key spec and usage, and every origin (kmsd's own material,
// imported material, a CloudHSM key store, an external key store), with an optional alias.
import { html, nothing, type TemplateResult } from 'lit';
import {
  CreateAliasCommand,
  CreateKeyCommand,
  DescribeCustomKeyStoresCommand,
  type CustomKeyStoresListEntry,
  type KeySpec,
  type KeyUsageType,
  type OriginType,
} from '@aws-sdk/client-kms';
import { checked, field, inlineError, settle, type Ctx, type Loaded } from '../ui';

/** Key specs and the usages each allows (as kmsd and AWS KMS accept them). */
export const SPECS: Record<string, string[]> = {
  SYMMETRIC_DEFAULT: ['ENCRYPT_DECRYPT'],
  RSA_2048: ['ENCRYPT_DECRYPT', 'SIGN_VERIFY'],
  RSA_3072: ['ENCRYPT_DECRYPT', 'SIGN_VERIFY'],
  RSA_4096: ['ENCRYPT_DECRYPT', 'SIGN_VERIFY'],
  ECC_NIST_P256: ['SIGN_VERIFY', 'KEY_AGREEMENT'],
  ECC_NIST_P384: ['SIGN_VERIFY', 'KEY_AGREEMENT'],
  ECC_NIST_P521: ['SIGN_VERIFY', 'KEY_AGREEMENT'],
  ECC_SECG_P256K1: ['SIGN_VERIFY', 'KEY_AGREEMENT'],
  ECC_NIST_EDWARDS25519: ['SIGN_VERIFY'],
  SM2: ['ENCRYPT_DECRYPT', 'SIGN_VERIFY', 'KEY_AGREEMENT'],
  HMAC_224: ['GENERATE_VERIFY_MAC'],
  HMAC_256: ['GENERATE_VERIFY_MAC'],
  HMAC_384: ['GENERATE_VERIFY_MAC'],
  HMAC_512: ['GENERATE_VERIFY_MAC'],
  ML_DSA_44: ['SIGN_VERIFY'],
  ML_DSA_65: ['SIGN_VERIFY'],
  ML_DSA_87: ['SIGN_VERIFY'],
  ML_KEM_512: ['ENCAPSULATE_DECAPSULATE'],
  ML_KEM_768: ['ENCAPSULATE_DECAPSULATE'],
  ML_KEM_1024: ['ENCAPSULATE_DECAPSULATE'],
};

const ORIGINS: { value: string; label: string }[] = [
  { value: 'AWS_KMS', label: 'kmsd generates the material (AWS_KMS)' },
  { value: 'EXTERNAL', label: 'Import your own material later (EXTERNAL)' },
  { value: 'AWS_CLOUDHSM', label: 'In a CloudHSM key store (AWS_CLOUDHSM)' },
  { value: 'EXTERNAL_KEY_STORE', label: 'In an external key store (EXTERNAL_KEY_STORE)' },
];

const s: { spec: string; usage: string; origin: string; stores: Loaded<CustomKeyStoresListEntry[]> | null } = {
  spec: 'SYMMETRIC_DEFAULT',
  usage: 'ENCRYPT_DECRYPT',
  origin: 'AWS_KMS',
  stores: null,
};

/** Loads the key stores a key can be created in. */
export async function load(ctx: Ctx): Promise<void> {
  s.stores = await settle(ctx.kms.send(new DescribeCustomKeyStoresCommand({ Limit: 1000 })).then((r) => r.CustomKeyStores || []));
  ctx.update();
}

async function submit(ctx: Ctx, e: SubmitEvent): Promise<void> {
  e.preventDefault();
  const form = e.target as HTMLFormElement;
  const alias = field(form, 'alias');
  const aliasName = alias && !alias.startsWith('alias/') ? `alias/${alias}` : alias;
  const storeId = field(form, 'store');
  const created = await ctx.run('Creating the key', async () => {
    const r = await ctx.kms.send(
      new CreateKeyCommand({
        KeySpec: s.spec as KeySpec,
        KeyUsage: s.usage as KeyUsageType,
        Origin: s.origin as OriginType,
        Description: field(form, 'description') || undefined,
        MultiRegion: checked(form, 'multiRegion') || undefined,
        CustomKeyStoreId: s.origin === 'AWS_CLOUDHSM' || s.origin === 'EXTERNAL_KEY_STORE' ? storeId : undefined,
        XksKeyId: s.origin === 'EXTERNAL_KEY_STORE' ? field(form, 'xksKeyId') : undefined,
      }),
    );
    return r.KeyMetadata?.KeyId;
  });
  if (!created) return;
  if (aliasName) {
    const aliased = await ctx.run('Adding the alias', () => ctx.kms.send(new CreateAliasCommand({ AliasName: aliasName, TargetKeyId: created })));
    if (!aliased) {
      // The key exists: say so with the alias error, and stay here.
      const m = ctx.message;
      ctx.message = { kind: 'error', code: m?.code, text: `Key ${created} was created, but not the alias ${aliasName}: ${m?.text}` };
      ctx.update();
      return;
    }
  }
  form.reset();
  ctx.go(`#/keys/${created}`);
}

/** The wizard. */
export function view(ctx: Ctx): TemplateResult {
  const usages = SPECS[s.spec] || [];
  const inStore = s.origin === 'AWS_CLOUDHSM' || s.origin === 'EXTERNAL_KEY_STORE';
  const storeType = s.origin === 'AWS_CLOUDHSM' ? 'AWS_CLOUDHSM' : 'EXTERNAL_KEY_STORE';
  const stores = s.stores?.ok ? s.stores.value.filter((k) => (k.CustomKeyStoreType || 'AWS_CLOUDHSM') === storeType) : [];
  return html`
    <h1 tabindex="-1">Create key</h1>
    <form class="wizard" @submit=${(e: SubmitEvent) => submit(ctx, e)}>
      <fieldset>
        <legend>1. What the key is for</legend>
        <label for="spec">Key spec</label>
        <select
          id="spec"
          name="spec"
          @change=${(e: Event) => {
            s.spec = (e.target as HTMLSelectElement).value;
            s.usage = (SPECS[s.spec] || [''])[0];
            if (s.spec !== 'SYMMETRIC_DEFAULT' && inStore) s.origin = 'AWS_KMS';
            ctx.update();
          }}
        >
          ${Object.keys(SPECS).map((k) => html`<option value=${k} ?selected=${k === s.spec}>${k}</option>`)}
        </select>
        <label for="usage">Key usage</label>
        <select id="usage" name="usage" @change=${(e: Event) => { s.usage = (e.target as HTMLSelectElement).value; ctx.update(); }}>
          ${usages.map((u) => html`<option value=${u} ?selected=${u === s.usage}>${u}</option>`)}
        </select>
      </fieldset>
      <fieldset>
        <legend>2. Where its material lives</legend>
        ${ORIGINS.map(
          (o) => html`<label class="check"
            ><input
              type="radio"
              name="origin"
              value=${o.value}
              .checked=${s.origin === o.value}
              ?disabled=${(o.value === 'AWS_CLOUDHSM' || o.value === 'EXTERNAL_KEY_STORE') && s.spec !== 'SYMMETRIC_DEFAULT'}
              @change=${() => { s.origin = o.value; ctx.update(); }}
            />
            ${o.label}</label
          >`,
        )}
        ${inStore
          ? html`${s.stores && !s.stores.ok ? inlineError(s.stores.error) : nothing}
              <label for="store">Custom key store</label>
              <select id="store" name="store" required>
                ${stores.map((k) => html`<option value=${k.CustomKeyStoreId}>${k.CustomKeyStoreName} (${k.CustomKeyStoreId}, ${k.ConnectionState})</option>`)}
              </select>
              ${stores.length === 0 ? html`<p class="muted">No key store of this type yet: <a href="#/stores">create one</a>.</p>` : nothing}
              ${s.origin === 'EXTERNAL_KEY_STORE'
                ? html`<label for="xksKeyId">External key ID (in the external key manager)</label>
                    <input id="xksKeyId" name="xksKeyId" required />`
                : nothing}`
          : nothing}
        ${s.origin === 'EXTERNAL'
          ? html`<p class="muted">The key is created in state PendingImport; import material with GetParametersForImport and ImportKeyMaterial (e.g. the aws CLI).</p>`
          : nothing}
      </fieldset>
      <fieldset>
        <legend>3. Name it</legend>
        <label for="alias">Alias <span class="muted">(optional)</span></label>
        <input id="alias" name="alias" placeholder="alias/my-app" pattern="(alias\\/)?[\\w\\/\\-]+" />
        <label for="description">Description <span class="muted">(optional)</span></label>
        <input id="description" name="description" maxlength="8192" />
        <label class="check"><input type="checkbox" name="multiRegion" ?disabled=${inStore} /> Multi-Region primary key</label>
      </fieldset>
      <button type="submit" ?disabled=${!!ctx.busy}>Create key</button>
    </form>
  `;
}
