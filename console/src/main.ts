// The kmsd console: sign-in, then a shell with navigation and one view per route.
import './style.css';
import { html, render, nothing, type TemplateResult } from 'lit';
import {
  clearCredentials,
  getCallerIdentity,
  kmsClient,
  loadCredentials,
  saveCredentials,
  toApiError,
  type Credentials,
} from './api';
import { checked, field, messageView, type Ctx, type Message } from './ui';
import * as keys from './views/keys';
import * as key from './views/key';
import * as createKey from './views/create-key';
import * as tryIt from './views/try-it';
import * as audit from './views/audit';
import * as stores from './views/stores';

const root = document.getElementById('app') as HTMLElement;

/** The app's state outside the views. */
const app: { ctx: Ctx | null; message: Message | null; signingIn: boolean } = {
  ctx: null,
  message: null,
  signingIn: false,
};

/** The route: `#/keys`, `#/keys/<id>`, `#/create-key`, `#/try`, `#/audit`, `#/stores`. */
function route(): { name: string; arg: string; params: URLSearchParams } {
  const h = window.location.hash.replace(/^#\/?/, '');
  const [path, query] = h.split('?');
  const [name, ...rest] = path.split('/');
  return { name: name || 'keys', arg: decodeURIComponent(rest.join('/')), params: new URLSearchParams(query || '') };
}

function update(): void {
  render(app.ctx ? shell(app.ctx) : signIn(), root);
}

function makeCtx(creds: Credentials, identity: { account: string; arn: string; userId: string }): Ctx {
  const ctx: Ctx = {
    creds,
    identity,
    kms: kmsClient(creds),
    message: null,
    busy: null,
    update,
    go(hash: string) {
      if (window.location.hash === hash) void enterRoute();
      else window.location.hash = hash;
    },
    async run(what, action, done) {
      ctx.busy = what;
      ctx.message = null;
      update();
      try {
        const result = await action();
        const text = done ? done(result) : undefined;
        ctx.message = text ? { kind: 'ok', text } : null;
        return result;
      } catch (e) {
        const err = toApiError(e);
        ctx.message = { kind: 'error', code: err.code, text: err.message };
        return undefined;
      } finally {
        ctx.busy = null;
        update();
        // The outcome is shown at the top of the page: bring it into view.
        if (ctx.message) root.querySelector('.message')?.scrollIntoView({ block: 'nearest' });
      }
    },
  };
  return ctx;
}

async function enterRoute(): Promise<void> {
  const ctx = app.ctx;
  if (!ctx) return update();
  ctx.message = null;
  const r = route();
  update();
  const views: Record<string, (ctx: Ctx, arg: string, params: URLSearchParams) => Promise<void>> = {
    keys: (c, a) => (a ? key.load(c, a) : keys.load(c)),
    'create-key': (c) => createKey.load(c),
    try: (c, _a, p) => tryIt.load(c, p),
    audit: (c, _a, p) => audit.load(c, p),
    stores: (c) => stores.load(c),
  };
  await (views[r.name] || views.keys)(ctx, r.arg, r.params);
  update();
  // Move focus to the new page's heading, so keyboard and screen-reader users land on it.
  (root.querySelector('main h1') as HTMLElement | null)?.focus();
}

function view(ctx: Ctx): TemplateResult {
  const r = route();
  switch (r.name) {
    case 'keys':
      return r.arg ? key.view(ctx) : keys.view(ctx);
    case 'create-key':
      return createKey.view(ctx);
    case 'try':
      return tryIt.view(ctx);
    case 'audit':
      return audit.view(ctx);
    case 'stores':
      return stores.view(ctx);
    default:
      return keys.view(ctx);
  }
}

function shell(ctx: Ctx): TemplateResult {
  const current = route().name;
  const link = (name: string, label: string) =>
    html`<li><a href="#/${name}" aria-current=${current === name ? 'page' : 'false'}>${label}</a></li>`;
  return html`
    <a class="skip" href="#main" @click=${(e: Event) => {
      e.preventDefault();
      (root.querySelector('main h1') as HTMLElement | null)?.focus();
    }}>Skip to content</a>
    <header class="top">
      <span class="brand"><img src="./favicon.svg" alt="" width="22" height="22" /> kmsd console</span>
      <nav aria-label="Main">
        <ul>
          ${link('keys', 'Keys')} ${link('create-key', 'Create key')} ${link('try', 'Try it')}
          ${link('stores', 'Key stores')} ${link('audit', 'Audit')}
        </ul>
      </nav>
      <div class="who" data-testid="identity">
        <span title=${ctx.identity.userId}>${ctx.identity.arn}</span>
        <span class="muted">account ${ctx.identity.account} · ${ctx.creds.region}</span>
        <button type="button" class="secondary" @click=${signOut}>Sign out</button>
      </div>
    </header>
    <main id="main">
      ${messageView(ctx.message)}
      ${ctx.busy ? html`<p class="busy" role="status" aria-live="polite">${ctx.busy}…</p>` : nothing}
      ${view(ctx)}
    </main>
  `;
}

/** Signs out: forgets the saved credentials, then reloads the page so that nothing of the
 * session (the secret in memory, the views' data) survives. */
function signOut(): void {
  clearCredentials();
  app.ctx = null;
  window.location.hash = '#/signed-out';
  window.location.reload();
}

async function submitSignIn(e: SubmitEvent): Promise<void> {
  e.preventDefault();
  const form = e.target as HTMLFormElement;
  const creds: Credentials = {
    accessKeyId: field(form, 'accessKeyId'),
    secretAccessKey: field(form, 'secretAccessKey'),
    sessionToken: field(form, 'sessionToken') || undefined,
    region: field(form, 'region') || 'us-east-1',
  };
  app.signingIn = true;
  app.message = null;
  update();
  try {
    const identity = await getCallerIdentity(creds);
    if (checked(form, 'remember')) saveCredentials(creds);
    else clearCredentials();
    app.ctx = makeCtx(creds, identity);
    app.message = null;
    form.reset();
    await enterRoute();
  } catch (err) {
    const a = toApiError(err);
    app.message = { kind: 'error', code: a.code, text: a.message };
  } finally {
    app.signingIn = false;
    update();
  }
}

function signIn(): TemplateResult {
  return html`
    <main id="main" class="signin">
      <h1 tabindex="-1">Sign in to kmsd</h1>
      <p class="muted">
        Use an access key of a kmsd user (for the account admin: <code>DATA_DIR/admin-credentials</code>) or temporary
        credentials from AssumeRole. Requests are signed in this browser and sent to this kmsd only; the secret never
        leaves the tab, and is kept in this tab's session storage only if you ask.
      </p>
      ${messageView(app.message)}
      <form @submit=${submitSignIn} autocomplete="off">
        <label for="accessKeyId">Access key ID</label>
        <input id="accessKeyId" name="accessKeyId" required spellcheck="false" autocapitalize="off" />
        <label for="secretAccessKey">Secret access key</label>
        <input id="secretAccessKey" name="secretAccessKey" type="password" required />
        <label for="sessionToken">Session token <span class="muted">(temporary credentials only)</span></label>
        <input id="sessionToken" name="sessionToken" type="password" />
        <label for="region">Region</label>
        <input id="region" name="region" value="us-east-1" required spellcheck="false" />
        <label class="check"
          ><input type="checkbox" name="remember" checked /> Keep me signed in in this tab (session storage, cleared on
          sign-out)</label
        >
        <button type="submit" ?disabled=${app.signingIn}>${app.signingIn ? 'Signing in…' : 'Sign in'}</button>
      </form>
    </main>
  `;
}

async function start(): Promise<void> {
  if (route().name === 'signed-out') {
    app.message = { kind: 'ok', text: 'Signed out: the credentials were removed from this tab.' };
    history.replaceState(null, '', window.location.pathname);
  }
  const saved = loadCredentials();
  if (saved) {
    try {
      app.ctx = makeCtx(saved, await getCallerIdentity(saved));
    } catch (e) {
      clearCredentials();
      const a = toApiError(e);
      app.message = { kind: 'error', code: a.code, text: `The saved credentials no longer work: ${a.message}` };
    }
  }
  window.addEventListener('hashchange', () => void enterRoute());
  await enterRoute();
}

void start();
