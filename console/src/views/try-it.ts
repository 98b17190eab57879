// "Try it": encrypt and decrypt a text, sign and verify a message, with a key of your choice.
import { html, nothing, type TemplateResult } from 'lit';
import {
  DecryptCommand,
  DescribeKeyCommand,
  EncryptCommand,
  SignCommand,
  VerifyCommand,
  type KeyMetadata,
  type SigningAlgorithmSpec,
} from '@aws-sdk/client-kms';
import { field, fromBase64, fromUtf8, toBase64, utf8, type Ctx } from '../ui';
import { listKeys, type KeyRow } from './keys';

const s: {
  keys: KeyRow[];
  keyId: string;
  ciphertext: string;
  plaintext: string | null;
  signKey: string;
  signing: KeyMetadata | null;
  signature: string;
  verdict: { valid: boolean; text: string } | null;
} = { keys: [], keyId: '', ciphertext: '', plaintext: null, signKey: '', signing: null, signature: '', verdict: null };

/** Loads the keys to choose from (`?key=` preselects one). */
export async function load(ctx: Ctx, params: URLSearchParams): Promise<void> {
  s.plaintext = null;
  s.verdict = null;
  try {
    s.keys = (await listKeys(ctx)).rows.filter((r) => r.meta?.KeyState === 'Enabled');
  } catch {
    s.keys = [];
  }
  const wanted = params.get('key');
  const enc = s.keys.filter((r) => r.meta?.KeyUsage === 'ENCRYPT_DECRYPT');
  const sig = s.keys.filter((r) => r.meta?.KeyUsage === 'SIGN_VERIFY');
  s.keyId = wanted && enc.some((r) => r.keyId === wanted) ? wanted : s.keyId || enc[0]?.keyId || '';
  s.signKey = wanted && sig.some((r) => r.keyId === wanted) ? wanted : s.signKey || sig[0]?.keyId || '';
  await loadSigning(ctx);
}

async function loadSigning(ctx: Ctx): Promise<void> {
  s.signing = null;
  if (!s.signKey) return;
  try {
    s.signing = (await ctx.kms.send(new DescribeKeyCommand({ KeyId: s.signKey }))).KeyMetadata || null;
  } catch {
    s.signing = null;
  }
  ctx.update();
}

function label(r: KeyRow): string {
  return `${r.aliases[0] ? `${r.aliases[0]} — ` : ''}${r.keyId} (${r.meta?.KeySpec})`;
}

function keyPicker(id: string, name: string, rows: KeyRow[], value: string, onChange: (v: string) => void): TemplateResult {
  return html`<input
      id=${id}
      name=${name}
      list="${id}-options"
      .value=${value}
      required
      spellcheck="false"
      @change=${(e: Event) => onChange((e.target as HTMLInputElement).value.trim())}
    />
    <datalist id="${id}-options">${rows.map((r) => html`<option value=${r.keyId}>${label(r)}</option>`)}</datalist>`;
}

async function encrypt(ctx: Ctx, e: SubmitEvent): Promise<void> {
  e.preventDefault();
  const form = e.target as HTMLFormElement;
  const keyId = field(form, 'encKey');
  const text = (form.elements.namedItem('plaintext') as HTMLTextAreaElement).value;
  s.keyId = keyId;
  await ctx.run(
    'Encrypting',
    () => ctx.kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: utf8(text) })),
    (r) => {
      s.ciphertext = toBase64(r.CiphertextBlob as Uint8Array);
      s.plaintext = null;
      return `Encrypted under ${r.KeyId} (${r.EncryptionAlgorithm}).`;
    },
  );
}

async function decrypt(ctx: Ctx, e: SubmitEvent): Promise<void> {
  e.preventDefault();
  const form = e.target as HTMLFormElement;
  const blob = field(form, 'ciphertext');
  s.ciphertext = blob;
  s.plaintext = null;
  await ctx.run(
    'Decrypting',
    async () => ctx.kms.send(new DecryptCommand({ CiphertextBlob: fromBase64(blob, 'The ciphertext') })),
    (r) => {
      s.plaintext = fromUtf8(r.Plaintext as Uint8Array);
      return `Decrypted with ${r.KeyId}.`;
    },
  );
}

async function sign(ctx: Ctx, e: SubmitEvent): Promise<void> {
  e.preventDefault();
  const form = e.target as HTMLFormElement;
  const message = (form.elements.namedItem('message') as HTMLTextAreaElement).value;
  const algorithm = field(form, 'algorithm') as SigningAlgorithmSpec;
  s.verdict = null;
  await ctx.run(
    'Signing',
    () => ctx.kms.send(new SignCommand({ KeyId: s.signKey, Message: utf8(message), MessageType: 'RAW', SigningAlgorithm: algorithm })),
    (r) => {
      s.signature = toBase64(r.Signature as Uint8Array);
      return `Signed with ${r.KeyId} (${r.SigningAlgorithm}).`;
    },
  );
}

async function verify(ctx: Ctx, form: HTMLFormElement): Promise<void> {
  const message = (form.elements.namedItem('message') as HTMLTextAreaElement).value;
  const algorithm = field(form, 'algorithm') as SigningAlgorithmSpec;
  const signature = field(form, 'signature');
  s.signature = signature;
  s.verdict = null;
  await ctx.run('Verifying', async () => {
    try {
      const r = await ctx.kms.send(
        new VerifyCommand({ KeyId: s.signKey, Message: utf8(message), MessageType: 'RAW', SigningAlgorithm: algorithm, Signature: fromBase64(signature, 'The signature') }),
      );
      s.verdict = r.SignatureValid ? { valid: true, text: 'The signature is valid.' } : { valid: false, text: 'The signature is NOT valid.' };
    } catch (err) {
      // kmsd answers an invalid signature with KMSInvalidSignatureException: a verdict, not a failure.
      if ((err as { name?: string }).name === 'KMSInvalidSignatureException') {
        s.verdict = { valid: false, text: 'The signature is NOT valid for this message, key and algorithm.' };
      } else throw err;
    }
  });
}

/** The page. */
export function view(ctx: Ctx): TemplateResult {
  const enc = s.keys.filter((r) => r.meta?.KeyUsage === 'ENCRYPT_DECRYPT');
  const sig = s.keys.filter((r) => r.meta?.KeyUsage === 'SIGN_VERIFY');
  const algorithms = s.signing?.SigningAlgorithms || [];
  return html`
    <h1 tabindex="-1">Try it</h1>
    <p class="muted">Every call here is a real, signed and audited KMS call made with your credentials.</p>
    <div class="grid">
      <section aria-labelledby="h-encrypt">
        <h2 id="h-encrypt">Encrypt a text</h2>
        <form @submit=${(e: SubmitEvent) => encrypt(ctx, e)}>
          <label for="encKey">Key (ID, ARN or alias)</label>
          ${keyPicker('encKey', 'encKey', enc, s.keyId, (v) => (s.keyId = v))}
          <label for="plaintext">Text to encrypt</label>
          <textarea id="plaintext" name="plaintext" rows="3" required>Hello from the kmsd console</textarea>
          <button type="submit">Encrypt</button>
        </form>
        <form @submit=${(e: SubmitEvent) => decrypt(ctx, e)}>
          <label for="ciphertext">Ciphertext (base64)</label>
          <textarea id="ciphertext" name="ciphertext" rows="4" required spellcheck="false" class="mono" .value=${s.ciphertext}></textarea>
          <button type="submit">Decrypt</button>
        </form>
        ${s.plaintext !== null
          ? html`<p><strong>Decrypted text:</strong> <output data-testid="decrypted" for="ciphertext">${s.plaintext}</output></p>`
          : nothing}
      </section>
      <section aria-labelledby="h-sign">
        <h2 id="h-sign">Sign and verify</h2>
        <form @submit=${(e: SubmitEvent) => sign(ctx, e)}>
          <label for="signKey">Signing key (ID, ARN or alias)</label>
          ${keyPicker('signKey', 'signKey', sig, s.signKey, (v) => {
            s.signKey = v;
            void loadSigning(ctx);
          })}
          ${sig.length === 0 ? html`<p class="muted small">No enabled SIGN_VERIFY key: <a href="#/create-key">create one</a> (e.g. ECC_NIST_P256).</p>` : nothing}
          <label for="algorithm">Signing algorithm</label>
          <select id="algorithm" name="algorithm">${algorithms.map((a) => html`<option value=${a}>${a}</option>`)}</select>
          <label for="message">Message</label>
          <textarea id="message" name="message" rows="3" required>Release 1.0 approved</textarea>
          <label for="signature">Signature (base64)</label>
          <textarea id="signature" name="signature" rows="3" spellcheck="false" class="mono" .value=${s.signature}></textarea>
          <div class="actions">
            <button type="submit">Sign</button>
            <button type="button" class="secondary" @click=${(e: Event) => verify(ctx, (e.target as HTMLElement).closest('form') as HTMLFormElement)}>Verify</button>
          </div>
        </form>
        ${s.verdict
          ? html`<p class=${s.verdict.valid ? 'verdict ok' : 'verdict bad'} role="status" data-testid="verdict">${s.verdict.text}</p>`
          : nothing}
      </section>
    </div>
  `;
}
