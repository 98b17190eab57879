// End-to-end test of the kmsd console in a real, headless Chromium (Debian's), against a
// running kmsd. Run by crates/kmsd/tests/console.rs, which starts kmsd and runs
// `node e2e.mjs SCENARIO` with:
//   KMSD_CONSOLE_URL            http://127.0.0.1:PORT/console/
//   KMSD_ADMIN_ACCESS_KEY_ID / KMSD_ADMIN_SECRET_ACCESS_KEY    the account admin
//   KMSD_CONSOLE_SCREENSHOTS    (optional) a directory to write screenshots of the main pages
//   CHROMIUM                    (optional) the browser, default /usr/bin/chromium
// Scenario `keys` (the default) also needs
//   KMSD_DENIED_ACCESS_KEY_ID / KMSD_DENIED_SECRET_ACCESS_KEY  a user without permissions
//   KMSD_TEMP_ACCESS_KEY_ID / KMSD_TEMP_SECRET_ACCESS_KEY / KMSD_TEMP_SESSION_TOKEN
//                                                              temporary credentials (AssumeRole)
// scenario `key-stores` (kmsd serving SoftHSM2 tokens as an HSM cluster)
//   KMSD_CLUSTER_ID, KMSD_TRUST_ANCHOR (PEM), KMSD_KMSUSER_PASSWORD
// scenario `external-key-store` (kmsd with our xks-proxy over TLS)
//   KMSD_XKS_ENDPOINT, KMSD_XKS_PATH, KMSD_XKS_ACCESS_KEY_ID, KMSD_XKS_SECRET, KMSD_XKS_KEY_ID
// and scenario `tls` (kmsd over HTTPS with a self-signed certificate, which this browser accepts)
// needs nothing more.
// Exits 0 when every step passed; otherwise prints the failing step and exits 1.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const url = env('KMSD_CONSOLE_URL');
const origin = new URL(url).origin;
const admin = { id: env('KMSD_ADMIN_ACCESS_KEY_ID'), secret: env('KMSD_ADMIN_SECRET_ACCESS_KEY') };
const shots = process.env.KMSD_CONSOLE_SCREENSHOTS;
const scenario = process.argv[2] || 'keys';

let step = 'starting';
/** Requests that left kmsd's origin, and browser errors: both fail the run. */
const foreign = [];
const problems = [];
const log = (s) => {
  step = s;
  console.log(`console e2e: ${s}`);
};
const fail = (why) => {
  throw new Error(why);
};

/** Waits until `locator`'s text matches `re` (polls; the page updates asynchronously). */
async function expectText(locator, re, timeout = 15000) {
  const deadline = Date.now() + timeout;
  let last = '';
  while (Date.now() < deadline) {
    try {
      last = (await locator.first().textContent({ timeout: 1000 })) ?? '';
      if (re.test(last)) return last;
    } catch {
      /* not there yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  fail(`expected ${re} in ${locator}, found: ${JSON.stringify(last)}`);
}

/** Waits until the input's value satisfies `ok`. */
async function expectValue(locator, ok, what, timeout = 15000) {
  const deadline = Date.now() + timeout;
  let last = '';
  while (Date.now() < deadline) {
    last = await locator.inputValue();
    if (ok(last)) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  fail(`${what}: found ${JSON.stringify(last)}`);
}

/** Every form control of the page has a label (accessible name); fails naming those without. */
async function checkLabels(page) {
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll('input, select, textarea, button')]
      .filter((el) => {
        const e = el;
        if (e.type === 'hidden') return false;
        const named = (e.labels && e.labels.length > 0) || e.getAttribute('aria-label') || (e.tagName === 'BUTTON' && e.textContent.trim());
        return !named;
      })
      .map((e) => e.outerHTML.slice(0, 80)),
  );
  if (unlabelled.length) fail(`form controls without a label on ${page.url()}: ${unlabelled.join(' | ')}`);
}

async function shot(page, name) {
  await checkLabels(page);
  if (shots) await page.screenshot({ path: join(shots, `${name}.png`), fullPage: false });
}

/** Signs in with an access key (and session token), by keyboard; waits for the identity. */
async function signIn(page, who, identity) {
  await page.getByRole('heading', { name: 'Sign in to kmsd' }).waitFor();
  for (const label of ['Access key ID', 'Secret access key', 'Session token']) await page.getByLabel(label).fill('');
  await page.getByLabel('Access key ID').focus();
  await page.keyboard.type(who.id);
  await page.keyboard.press('Tab');
  await page.keyboard.type(who.secret);
  if (who.token) {
    await page.keyboard.press('Tab');
    await page.keyboard.type(who.token);
  }
  await page.keyboard.press('Enter');
  await expectText(page.getByTestId('identity'), identity);
}

/** Keys, policies, crypto, audit, sign-out, temporary credentials and a denied user. */
async function keys(page) {
  const denied = { id: env('KMSD_DENIED_ACCESS_KEY_ID'), secret: env('KMSD_DENIED_SECRET_ACCESS_KEY') };
  const temporary = {
    id: env('KMSD_TEMP_ACCESS_KEY_ID'),
    secret: env('KMSD_TEMP_SECRET_ACCESS_KEY'),
    token: env('KMSD_TEMP_SESSION_TOKEN'),
  };
  log('the sign-in page loads under the CSP, keyboard first');
  await page.goto(url);
  await page.getByRole('heading', { name: 'Sign in to kmsd' }).waitFor();
  await shot(page, 'sign-in');
  await signIn(page, admin, /arn:aws:iam::\d{12}:user\/admin/);
  if (!(await page.evaluate(() => sessionStorage.length === 1))) fail('credentials not in sessionStorage');
  log('keyboard: the first focusable element skips to the content');
  const first = await page.evaluate(() => document.querySelector('a[href], button, input, select, textarea')?.textContent);
  if (first !== 'Skip to content') fail(`the first focusable element is not the skip link: ${first}`);
  await page.getByRole('link', { name: 'Skip to content' }).focus();
  await page.keyboard.press('Enter');
  if ((await page.evaluate(() => document.activeElement?.tagName)) !== 'H1') fail('the skip link does not move focus to the heading');
  if (await page.evaluate(() => localStorage.length !== 0)) fail('something was written to localStorage');

  log('create a key');
  await page.getByRole('link', { name: 'Create key' }).first().click();
  await page.getByRole('heading', { name: 'Create key' }).waitFor();
  await page.getByLabel('Description').fill('console e2e key');
  await page.getByRole('button', { name: 'Create key' }).click();
  await page.getByTestId('key-metadata').waitFor();
  const keyId = (await page.locator('.crumbs .mono').textContent()).trim();
  if (!/^[0-9a-f-]{36}$/.test(keyId)) fail(`no key id on the key page: ${keyId}`);
  await expectText(page.getByTestId('key-metadata'), /console e2e key/);

  log('add an alias');
  await page.getByLabel('Alias name').fill('alias/console-e2e');
  await page.getByRole('button', { name: 'Add alias' }).click();
  await expectText(page.getByTestId('status'), /Alias alias\/console-e2e created/);
  await expectText(page.getByTestId('aliases'), /alias\/console-e2e/);
  await shot(page, 'key');

  log('the policy editor refuses text that is not JSON');
  const editor = page.getByLabel('Policy document (JSON)');
  const original = await editor.inputValue();
  if (!original.includes('"Statement"')) fail('the key policy did not load');
  await editor.fill('{"Version": "2012-10-17", ');
  await expectText(page.locator('#policy-check'), /Not valid JSON/);
  if (!(await page.getByRole('button', { name: 'Save policy' }).isDisabled())) fail('Save enabled on invalid JSON');

  log("a malformed policy shows kmsd's MalformedPolicyDocumentException message");
  const malformed = JSON.parse(original);
  malformed.Statement[0].Effect = 'Maybe';
  await editor.fill(JSON.stringify(malformed, null, 2));
  const answer = page.waitForResponse((r) => r.request().headers()['x-amz-target'] === 'TrentService.PutKeyPolicy');
  await page.getByRole('button', { name: 'Save policy' }).click();
  const response = await answer;
  const body = await response.json();
  if (response.status() !== 400 || !String(body.__type).endsWith('MalformedPolicyDocumentException')) {
    fail(`kmsd answered ${response.status()} ${JSON.stringify(body)}`);
  }
  const alert = await expectText(page.getByTestId('error'), /MalformedPolicyDocumentException/);
  if (!alert.includes(body.message)) fail(`the page shows "${alert}", kmsd said "${body.message}"`);
  await expectText(page.getByTestId('policy-error'), /MalformedPolicyDocumentException/);
  await shot(page, 'policy-error');

  log('a valid policy edit is saved');
  const edited = JSON.parse(original);
  edited.Statement[0].Sid = 'ConsoleEdited';
  await editor.fill(JSON.stringify(edited, null, 2));
  await page.getByRole('button', { name: 'Save policy' }).click();
  await expectText(page.getByTestId('status'), /Key policy saved/);
  if (!(await editor.inputValue()).includes('ConsoleEdited')) fail('the saved policy was not reloaded');

  log('tag the key');
  await page.getByLabel('Tag key').fill('team');
  await page.getByLabel('Tag value').fill('payments');
  await page.getByRole('button', { name: 'Set tag' }).click();
  await expectText(page.getByTestId('status'), /Tag team set/);
  await expectText(page.locator('section', { has: page.getByRole('heading', { name: 'Tags' }) }), /payments/);

  log('rotate on demand; the history shows it');
  await page.getByRole('button', { name: 'Rotate now' }).click();
  await expectText(page.getByTestId('status'), /Key rotated/);
  await expectText(page.locator('section', { has: page.getByRole('heading', { name: 'Rotation' }) }), /Rotation history[\s\S]*ON_DEMAND/);

  log('disable and enable');
  await page.getByRole('button', { name: 'Disable key' }).click();
  await expectText(page.getByTestId('status'), /Key disabled/);
  await expectText(page.locator('main h1'), /Disabled/);
  await page.getByRole('button', { name: 'Enable key' }).click();
  await expectText(page.getByTestId('status'), /Key enabled/);

  log('schedule the deletion, see the waiting period, cancel it');
  await page.getByLabel('Waiting period (days, 7–30)').fill('7');
  page.once('dialog', (d) => void d.dismiss());
  await page.getByRole('button', { name: 'Schedule deletion' }).click();
  await expectText(page.locator('main h1'), /Enabled/);
  page.once('dialog', (d) => {
    if (!/Schedule the deletion of key .* in 7 days/.test(d.message())) problems.push(`unexpected dialog: ${d.message()}`);
    void d.accept();
  });
  await page.getByRole('button', { name: 'Schedule deletion' }).click();
  await expectText(page.getByTestId('status'), /Deletion scheduled in 7 days/);
  await expectText(page.locator('main'), /Scheduled for deletion on [\s\S]*\(in 7 days\)/);
  await page.getByRole('button', { name: 'Cancel deletion' }).click();
  await expectText(page.getByTestId('status'), /Deletion cancelled/);
  await page.getByRole('button', { name: 'Enable key' }).click();
  await expectText(page.getByTestId('status'), /Key enabled/);

  log('encrypt and decrypt a text');
  await page.getByRole('link', { name: 'Try it with this key' }).click();
  await page.getByRole('heading', { name: 'Try it' }).waitFor();
  await expectValue(page.getByLabel('Key (ID, ARN or alias)', { exact: true }), (v) => v === keyId, 'the key was not preselected');
  await page.getByLabel('Text to encrypt').fill('hello from a browser');
  await page.getByRole('button', { name: 'Encrypt', exact: true }).click();
  await expectText(page.getByTestId('status'), /Encrypted under/);
  const ciphertext = await page.getByLabel('Ciphertext (base64)').inputValue();
  if (ciphertext.length < 40) fail(`no ciphertext: ${ciphertext}`);
  await page.getByRole('button', { name: 'Decrypt', exact: true }).click();
  await expectText(page.getByTestId('decrypted'), /^hello from a browser$/);
  log('a tampered ciphertext is an error, not a plaintext');
  const tampered = ciphertext.slice(0, 20) + (ciphertext[20] === 'A' ? 'B' : 'A') + ciphertext.slice(21);
  await page.getByLabel('Ciphertext (base64)').fill(tampered);
  await page.getByRole('button', { name: 'Decrypt', exact: true }).click();
  await expectText(page.getByTestId('error'), /InvalidCiphertextException/);
  if ((await page.getByTestId('decrypted').count()) !== 0) fail('a plaintext is shown after a failed decrypt');

  log('sign and verify with an ECC key created in the wizard');
  await page.getByRole('link', { name: 'Create key' }).first().click();
  await page.getByLabel('Key spec').selectOption('ECC_NIST_P256');
  await page.getByLabel('Key usage').selectOption('SIGN_VERIFY');
  await page.getByLabel('Alias').fill('console-signer');
  await shot(page, 'create-key');
  await page.getByRole('button', { name: 'Create key' }).click();
  await expectText(page.getByTestId('key-metadata'), /ECC_NIST_P256/);
  await page.getByRole('link', { name: 'Try it with this key' }).click();
  await page.getByRole('heading', { name: 'Sign and verify' }).waitFor();
  await expectText(page.getByLabel('Signing algorithm'), /ECDSA_SHA_256/);
  await page.getByLabel('Message').fill('release 1.0');
  await page.getByRole('button', { name: 'Sign', exact: true }).click();
  await expectText(page.getByTestId('status'), /Signed with/);
  await page.getByRole('button', { name: 'Verify', exact: true }).click();
  await expectText(page.getByTestId('verdict'), /^The signature is valid\.$/);
  await page.getByLabel('Message').fill('release 6.6.6');
  await page.getByRole('button', { name: 'Verify', exact: true }).click();
  await expectText(page.getByTestId('verdict'), /NOT valid/);
  await shot(page, 'try-it');

  log('the keys list shows both keys and filters them');
  await page.getByRole('link', { name: 'Keys', exact: true }).click();
  await expectText(page.getByTestId('keys-table'), /alias\/console-e2e[\s\S]*|alias\/console-signer/);
  const table = page.getByTestId('keys-table');
  await expectText(table, /alias\/console-e2e/);
  await expectText(table, /alias\/console-signer/);
  await shot(page, 'keys');
  await page.getByLabel('Usage').selectOption('SIGN_VERIFY');
  await expectText(table, /^(?![\s\S]*console-e2e)[\s\S]*console-signer/);
  await page.getByLabel('Usage').selectOption('');

  log("the key's audit events are listed");
  await page.goto(`${url}#/keys/${keyId}`);
  await page.getByRole('link', { name: 'Audit events' }).click();
  const audit = page.getByTestId('audit-table');
  await expectText(audit, /Decrypt/);
  await expectText(audit, /Encrypt/);
  await expectText(audit, /CreateAlias/);
  await expectText(audit, /CreateKey/);
  await shot(page, 'audit');
  log('failed calls are filtered');
  await page.getByLabel('Key ID or ARN').fill('');
  await page.getByLabel('Outcome').selectOption('any');
  await page.getByRole('button', { name: 'Apply filters' }).click();
  await expectText(audit, /InvalidCiphertextException/);
  await expectText(audit, /MalformedPolicyDocumentException/);

  log('the key stores page loads');
  await page.getByRole('link', { name: 'Key stores' }).click();
  await page.getByRole('heading', { name: 'CloudHSM clusters' }).waitFor();
  await expectText(page.locator('main'), /No custom key stores/);

  log('sign-out removes the credentials');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in to kmsd' }).waitFor();
  await expectText(page.getByTestId('status'), /Signed out/);
  if (!(await page.evaluate(() => sessionStorage.length === 0))) fail('credentials left in sessionStorage');

  log('a user without permissions sees denials, never a success');
  await page.getByLabel('Access key ID').fill(denied.id);
  await page.getByLabel('Secret access key').fill(denied.secret);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expectText(page.getByTestId('identity'), /user\/viewer/);
  await expectText(page.locator('main'), /AccessDeniedException/);
  await page.getByRole('link', { name: 'Create key' }).first().click();
  await page.getByRole('button', { name: 'Create key' }).click();
  await expectText(page.getByTestId('error'), /AccessDeniedException: .*kms:CreateKey/);
  if ((await page.getByTestId('key-metadata').count()) !== 0) fail('a key page is shown after a denied CreateKey');
  await shot(page, 'denied');
  await page.getByRole('link', { name: 'Audit' }).click();
  await expectText(page.locator('main'), /AccessDeniedException.*kmsd:ReadAudit/);
  if ((await page.getByTestId('audit-table').count()) !== 0) fail('audit records shown to a denied user');

  log('wrong credentials are refused at sign-in');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('Access key ID').fill(denied.id);
  await page.getByLabel('Secret access key').fill('not-the-secret');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expectText(page.getByTestId('error'), /SignatureDoesNotMatch|InvalidSignature/);
  if ((await page.getByTestId('identity').count()) !== 0) fail('signed in with a wrong secret');

  log('temporary credentials (with a session token) sign in as the assumed role');
  await signIn(page, temporary, /assumed-role\/console-role\/console-session/);
  await page.getByRole('link', { name: 'Keys', exact: true }).click();
  await expectText(page.getByTestId('keys-table'), /alias\/console-e2e/);
}

/** Clicks Refresh on the key stores page until `stores` shows CONNECTED (not DISCONNECTED). */
async function waitConnected(page, stores) {
  const deadline = Date.now() + 60000;
  while (!/(^|[^S])CONNECTED/.test(await stores.textContent())) {
    if (Date.now() > deadline) fail(`the store did not connect: ${await stores.textContent()}`);
    await new Promise((r) => setTimeout(r, 500));
    await page.getByRole('button', { name: 'Refresh' }).click();
  }
}

/** An external key store: create (proxy endpoint, path, credential), connect, a key backed by
 * an external key, encrypt/decrypt (double encryption through the proxy), disconnect. */
async function externalKeyStore(page) {
  log('create an external key store');
  await page.goto(url + '#/stores');
  await signIn(page, admin, /user\/admin/);
  await page.getByLabel('External key store').check();
  await page.getByLabel('Name', { exact: true }).fill('console-xks');
  await page.getByLabel('Proxy URI endpoint').fill(env('KMSD_XKS_ENDPOINT'));
  await page.getByLabel('Proxy URI path').fill(env('KMSD_XKS_PATH'));
  await page.getByLabel('Proxy authentication: access key ID').fill(env('KMSD_XKS_ACCESS_KEY_ID'));
  await page.getByLabel('Proxy authentication: secret access key').fill(env('KMSD_XKS_SECRET'));
  await shot(page, 'external-key-store');
  await page.getByRole('button', { name: 'Create key store' }).click();
  await expectText(page.getByTestId('status'), /Key store console-xks created/);
  const stores = page.getByTestId('stores-table');
  await expectText(stores, /console-xks[\s\S]*EXTERNAL_KEY_STORE[\s\S]*DISCONNECTED/);

  log('connect it');
  await page.getByRole('button', { name: 'Connect', exact: true }).click();
  await waitConnected(page, stores);

  log('a key backed by an external key');
  await page.getByRole('link', { name: 'Create key' }).first().click();
  await page.getByLabel('In an external key store').check();
  await expectText(page.getByLabel('Custom key store'), /console-xks/);
  await page.getByLabel('External key ID').fill(env('KMSD_XKS_KEY_ID'));
  await page.getByRole('button', { name: 'Create key' }).click();
  const meta = page.getByTestId('key-metadata');
  await expectText(meta, /EXTERNAL_KEY_STORE/);
  await expectText(meta, new RegExp(`External key${env('KMSD_XKS_KEY_ID')}`));

  log('encrypt and decrypt through the proxy');
  await page.getByRole('link', { name: 'Try it with this key' }).click();
  await expectValue(page.getByLabel('Key (ID, ARN or alias)', { exact: true }), (v) => v.length > 0, 'no key preselected');
  await page.getByLabel('Text to encrypt').fill('held outside kmsd');
  await page.getByRole('button', { name: 'Encrypt', exact: true }).click();
  await expectText(page.getByTestId('status'), /Encrypted under/);
  await page.getByRole('button', { name: 'Decrypt', exact: true }).click();
  await expectText(page.getByTestId('decrypted'), /^held outside kmsd$/);

  log('disconnect it');
  await page.getByRole('link', { name: 'Key stores' }).click();
  await page.getByRole('button', { name: 'Disconnect' }).click();
  await expectText(page.getByTestId('status'), /disconnected/);
}

/** Over HTTPS (HTTP/2, as browsers speak it with kmsd): sign in, create a key, encrypt, decrypt. */
async function tls(page) {
  log('the console over HTTPS, HTTP/2');
  await page.goto(url);
  await signIn(page, admin, /user\/admin/);
  const protocol = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
  if (protocol !== 'h2') fail(`the page was loaded over ${protocol}, not h2`);
  if (!(await page.evaluate(() => window.isSecureContext))) fail('not a secure context');
  log('create a key and use it over HTTP/2');
  await page.getByRole('link', { name: 'Create key' }).first().click();
  await page.getByLabel('Alias').fill('over-tls');
  await page.getByRole('button', { name: 'Create key' }).click();
  await expectText(page.getByTestId('aliases'), /alias\/over-tls/);
  await page.getByRole('link', { name: 'Try it with this key' }).click();
  await expectValue(page.getByLabel('Key (ID, ARN or alias)', { exact: true }), (v) => v.length > 0, 'no key preselected');
  await page.getByLabel('Text to encrypt').fill('over h2');
  await page.getByRole('button', { name: 'Encrypt', exact: true }).click();
  await expectText(page.getByTestId('status'), /Encrypted under/);
  await page.getByRole('button', { name: 'Decrypt', exact: true }).click();
  await expectText(page.getByTestId('decrypted'), /^over h2$/);
}

/** A CloudHSM key store: the cluster, create, connect, a key in it, crypto, disconnect. */
async function keyStores(page) {
  const cluster = env('KMSD_CLUSTER_ID');
  log('the HSM cluster is listed with its HSMs');
  await page.goto(url + '#/stores');
  await signIn(page, admin, /user\/admin/);
  const main = page.locator('main');
  await expectText(main, new RegExp(`${cluster}[\\s\\S]*ACTIVE`));
  await expectText(main, /hsm-[0-9a-z]+/);

  log('create a CloudHSM key store');
  await page.getByLabel('Name', { exact: true }).fill('console-hsm-store');
  await page.getByLabel('CloudHSM cluster', { exact: true }).selectOption(cluster);
  await page.getByLabel('Trust anchor certificate').fill(env('KMSD_TRUST_ANCHOR'));
  await page.getByLabel('kmsuser password').fill(env('KMSD_KMSUSER_PASSWORD'));
  await page.getByRole('button', { name: 'Create key store' }).click();
  await expectText(page.getByTestId('status'), /Key store console-hsm-store created/);
  const stores = page.getByTestId('stores-table');
  await expectText(stores, /console-hsm-store[\s\S]*DISCONNECTED/);

  log('connect it');
  await page.getByRole('button', { name: 'Connect', exact: true }).click();
  await waitConnected(page, stores);

  log('create a key in the key store');
  await page.getByRole('link', { name: 'Create key' }).first().click();
  await page.getByLabel('In a CloudHSM key store').check();
  await expectText(page.getByLabel('Custom key store'), /console-hsm-store/);
  await page.getByLabel('Alias').fill('hsm-key');
  await page.getByRole('button', { name: 'Create key' }).click();
  const meta = page.getByTestId('key-metadata');
  await expectText(meta, /AWS_CLOUDHSM/);
  await expectText(meta, new RegExp(cluster));

  log('encrypt and decrypt inside the HSMs');
  await page.getByRole('link', { name: 'Try it with this key' }).click();
  await expectValue(page.getByLabel('Key (ID, ARN or alias)', { exact: true }), (v) => v.length > 0, 'no key preselected');
  await page.getByLabel('Text to encrypt').fill('sealed by an HSM');
  await page.getByRole('button', { name: 'Encrypt', exact: true }).click();
  await expectText(page.getByTestId('status'), /Encrypted under/);
  await page.getByRole('button', { name: 'Decrypt', exact: true }).click();
  await expectText(page.getByTestId('decrypted'), /^sealed by an HSM$/);

  log('the store lists its key; disconnect it');
  await page.getByRole('link', { name: 'Key stores' }).click();
  await expectText(stores, /alias\/hsm-key/);
  await shot(page, 'key-stores');
  await page.getByRole('button', { name: 'Disconnect' }).click();
  await expectText(page.getByTestId('status'), /disconnected/);
  await expectText(stores, /DISCONNECTED/);
}

const profile = mkdtempSync(join(tmpdir(), 'kmsd-console-chromium-'));
// A fresh profile directory for this run, removed at the end.
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
  viewport: { width: 1440, height: 900 },
  // The `tls` scenario's kmsd has a self-signed certificate made by the test.
  ignoreHTTPSErrors: url.startsWith('https:'),
});
let failed = false;
try {
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(15000);
  page.on('request', (r) => {
    if (!r.url().startsWith(origin + '/') && !r.url().startsWith('data:')) foreign.push(r.url());
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // A denied call is an HTTP 400 the browser logs as a failed resource load: expected.
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`);
  });

  const scenarios = { keys, 'key-stores': keyStores, 'external-key-store': externalKeyStore, tls };
  if (!scenarios[scenario]) fail(`unknown scenario ${scenario}`);
  await scenarios[scenario](page);

  if (foreign.length) fail(`requests left kmsd's origin: ${foreign.join(', ')}`);
  if (problems.length) fail(`browser errors:\n${problems.join('\n')}`);
  log('all steps passed');
} catch (e) {
  failed = true;
  console.error(`console e2e FAILED at "${step}": ${e instanceof Error ? e.message : e}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
